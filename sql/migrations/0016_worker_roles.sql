-- Per-worker database roles (manager/worker_roles.py): a worker's role may not create tables, so
-- the AI worker's schema installer runs with its owner's rights (the user that migrates), with a
-- fixed search_path as a SECURITY DEFINER function must have.
ALTER FUNCTION ai_install_schema() SECURITY DEFINER SET search_path = public, pg_catalog;
-- The lease fence locks the worker's lease row (FOR SHARE), which a role that may only read
-- worker_leases is not allowed to do: the check runs with its owner's rights instead.
ALTER FUNCTION check_worker_lease(text, bigint) SECURITY DEFINER SET search_path = public, pg_catalog;
-- Likewise the AI worker's vector index for its configured dimensions (DDL on ai_posts).
ALTER FUNCTION ai_ensure_vector_index(integer) SECURITY DEFINER SET search_path = public, pg_catalog;
