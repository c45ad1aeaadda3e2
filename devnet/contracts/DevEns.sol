// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title A small, faithful ENS for the local devnet.
/// @notice Mainnet ENS reads go through the UniversalResolver at a fixed address; web3.py's
///         `ens.name(addr)` resolves `<hex>.addr.reverse` through it and then forward-verifies the
///         name. These four contracts keep the real roles and checks (only a name's owner sets its
///         records; anyone may set only their own reverse record), so a spoofed reverse record fails
///         the forward check exactly as it would on mainnet. Wildcard (ENSIP-10) resolvers and
///         CCIP-read are left out: nothing on the devnet needs them.

/// @notice The registry: who owns a node and which resolver answers for it.
contract DevEnsRegistry {
    mapping(bytes32 => address) private _owners; // slot 0: the seeder writes the root owner here
    mapping(bytes32 => address) private _resolvers;
    mapping(bytes32 => uint64) private _ttls;

    event NewOwner(bytes32 indexed node, bytes32 indexed label, address owner);
    event Transfer(bytes32 indexed node, address owner);
    event NewResolver(bytes32 indexed node, address resolver);
    event NewTTL(bytes32 indexed node, uint64 ttl);

    constructor() {
        _owners[bytes32(0)] = msg.sender;
    }

    modifier onlyOwner(bytes32 node) {
        require(_owners[node] == msg.sender, "DevEns: not node owner");
        _;
    }

    function owner(bytes32 node) external view returns (address) {
        return _owners[node];
    }

    function resolver(bytes32 node) external view returns (address) {
        return _resolvers[node];
    }

    function ttl(bytes32 node) external view returns (uint64) {
        return _ttls[node];
    }

    function recordExists(bytes32 node) external view returns (bool) {
        return _owners[node] != address(0);
    }

    function setOwner(bytes32 node, address newOwner) external onlyOwner(node) {
        _owners[node] = newOwner;
        emit Transfer(node, newOwner);
    }

    function setSubnodeOwner(bytes32 node, bytes32 label, address newOwner)
        external
        onlyOwner(node)
        returns (bytes32 subnode)
    {
        subnode = keccak256(abi.encodePacked(node, label));
        _owners[subnode] = newOwner;
        emit NewOwner(node, label, newOwner);
    }

    function setResolver(bytes32 node, address newResolver) external onlyOwner(node) {
        _resolvers[node] = newResolver;
        emit NewResolver(node, newResolver);
    }

    function setTTL(bytes32 node, uint64 newTtl) external onlyOwner(node) {
        _ttls[node] = newTtl;
        emit NewTTL(node, newTtl);
    }
}

/// @notice A public resolver holding `addr` and `name` records; only the node's registry owner writes.
contract DevPublicResolver {
    DevEnsRegistry public immutable ens;
    mapping(bytes32 => address) private _addrs;
    mapping(bytes32 => string) private _names;

    event AddrChanged(bytes32 indexed node, address a);
    event NameChanged(bytes32 indexed node, string name);

    constructor(DevEnsRegistry ens_) {
        ens = ens_;
    }

    modifier authorised(bytes32 node) {
        require(ens.owner(node) == msg.sender, "DevEns: not authorised");
        _;
    }

    function supportsInterface(bytes4 id) external pure returns (bool) {
        // ERC-165, addr(bytes32), name(bytes32)
        return id == 0x01ffc9a7 || id == 0x3b3b57de || id == 0x691f3431;
    }

    function addr(bytes32 node) external view returns (address) {
        return _addrs[node];
    }

    function setAddr(bytes32 node, address a) external authorised(node) {
        _addrs[node] = a;
        emit AddrChanged(node, a);
    }

    function name(bytes32 node) external view returns (string memory) {
        return _names[node];
    }

    function setName(bytes32 node, string calldata newName) external authorised(node) {
        _names[node] = newName;
        emit NameChanged(node, newName);
    }
}

/// @notice Lets any account set the name record of its own `<hex>.addr.reverse` node, and no other.
contract DevReverseRegistrar {
    // namehash("addr.reverse")
    bytes32 public constant ADDR_REVERSE_NODE = 0x91d1777781884d03a6757a803996e38de2a42967fb37eeaca72729271025a9e2;

    DevEnsRegistry public immutable ens;
    DevPublicResolver public immutable defaultResolver;

    constructor(DevEnsRegistry ens_, DevPublicResolver resolver_) {
        ens = ens_;
        defaultResolver = resolver_;
    }

    function node(address a) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(ADDR_REVERSE_NODE, _hexLabel(a)));
    }

    /// @notice Point the caller's reverse node at `newName` (not verified here: readers must check
    ///         that the name resolves back to the caller, which web3.py does).
    function setName(string calldata newName) external returns (bytes32 reverseNode) {
        bytes32 label = _hexLabel(msg.sender);
        reverseNode = keccak256(abi.encodePacked(ADDR_REVERSE_NODE, label));
        if (ens.owner(reverseNode) != address(this)) {
            ens.setSubnodeOwner(ADDR_REVERSE_NODE, label, address(this));
        }
        if (ens.resolver(reverseNode) != address(defaultResolver)) {
            ens.setResolver(reverseNode, address(defaultResolver));
        }
        defaultResolver.setName(reverseNode, newName);
    }

    /// @dev keccak256 of the lowercase hex of `a` without 0x: the label of its reverse node.
    function _hexLabel(address a) private pure returns (bytes32) {
        bytes16 digits = "0123456789abcdef";
        bytes memory out = new bytes(40);
        uint160 v = uint160(a);
        for (uint256 i = 40; i > 0; i--) {
            out[i - 1] = digits[v & 0xf];
            v >>= 4;
        }
        return keccak256(out);
    }
}

/// @notice The read entry point web3.py uses (placed at 0xeEeEEEeE14D718C2B47D9923Deab1335E144EeEe
///         with anvil_setCode). Same ABI as ENS's UniversalResolver for `resolve` and `findResolver`.
contract DevUniversalResolver {
    DevEnsRegistry public immutable registry;

    error ResolverNotFound(bytes name);
    error ResolverError(bytes returnData);

    constructor(DevEnsRegistry registry_) {
        registry = registry_;
    }

    /// @notice The nearest resolver walking up from `name` (DNS wire format), the node of the full
    ///         name, and the offset into `name` where that resolver was found.
    function findResolver(bytes calldata name)
        public
        view
        returns (address resolver, bytes32 node, uint256 offset)
    {
        node = _namehash(name, 0);
        while (offset < name.length && uint8(name[offset]) != 0) {
            resolver = registry.resolver(_namehash(name, offset));
            if (resolver != address(0)) {
                return (resolver, node, offset);
            }
            offset += 1 + uint8(name[offset]);
        }
        return (address(0), node, offset);
    }

    /// @notice Forward `data` (e.g. `addr(node)` or `name(node)`) to the name's own resolver.
    function resolve(bytes calldata name, bytes calldata data) external view returns (bytes memory, address) {
        (address resolver,, uint256 offset) = findResolver(name);
        // A resolver found only on a parent would need ENSIP-10 wildcard support: treat as none.
        if (resolver == address(0) || offset != 0) {
            revert ResolverNotFound(name);
        }
        (bool ok, bytes memory ret) = resolver.staticcall(data);
        if (!ok) {
            revert ResolverError(ret);
        }
        return (ret, resolver);
    }

    function _namehash(bytes calldata name, uint256 offset) private pure returns (bytes32) {
        uint256 len = uint8(name[offset]);
        if (len == 0) {
            return bytes32(0);
        }
        bytes32 label = keccak256(name[offset + 1:offset + 1 + len]);
        return keccak256(abi.encodePacked(_namehash(name, offset + 1 + len), label));
    }
}
