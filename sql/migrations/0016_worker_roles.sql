-- Per-worker database roles (manager/worker_roles.py): a worker's role may not create tables, so
-- the AI worker's schema installer runs with its owner's rights (the user that migrates), with a
-- fixed search_path as a SECURITY DEFINER function must have.
ALTER FUNCTION ai_install_schema() SECURITY DEFINER SET search_path = public, pg_catalog;
-- The lease fence locks the worker's lease row (FOR SHARE), which a role that may only read
-- worker_leases is not allowed to do: the check runs with its owner's rights instead.
ALTER FUNCTION check_worker_lease(text, bigint) SECURITY DEFINER SET search_path = public, pg_catalog;
-- Likewise the AI worker's vector index for its configured dimensions (DDL on ai_posts).
ALTER FUNCTION ai_ensure_vector_index(integer) SECURITY DEFINER SET search_path = public, pg_catalog;
-- The read horizon looks at every session's transaction start in pg_stat_activity, which a role
-- sees only for its own sessions: a worker role would think no writer is mid-transaction and skip
-- rows committed late. It runs as its owner (the manager's user: a superuser, or a member of the
-- worker roles it made, see manager/worker_roles.py), which sees them all.
ALTER FUNCTION sync_read_horizon() SECURITY DEFINER SET search_path = public, pg_catalog;
