// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title DevMulticall3: the read side of Multicall3 (mds1/multicall), for the local devnet.
/// @notice Same function signatures and ABI as the canonical Multicall3 that is deployed at
///         0xcA11bde05977b3631167028862bE2a173976CA11 on Ethereum, BASE and most other chains, so a
///         sync worker batches its reads the same way on the devnet as in production. anvil starts
///         without it; the devnet copies this runtime code to the canonical address (anvil_setCode).
contract DevMulticall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Call each target with its calldata; a failing call reverts the lot unless allowFailure.
    function aggregate3(Call3[] calldata calls) public payable returns (Result[] memory returnData) {
        uint256 length = calls.length;
        returnData = new Result[](length);
        for (uint256 i = 0; i < length; ++i) {
            Call3 calldata call = calls[i];
            (bool success, bytes memory ret) = call.target.call(call.callData);
            require(success || call.allowFailure, "Multicall3: call failed");
            returnData[i] = Result(success, ret);
        }
    }

    function getEthBalance(address addr) public view returns (uint256 balance) {
        balance = addr.balance;
    }

    function getBlockNumber() public view returns (uint256 blockNumber) {
        blockNumber = block.number;
    }

    function getCurrentBlockTimestamp() public view returns (uint256 timestamp) {
        timestamp = block.timestamp;
    }

    function getChainId() public view returns (uint256 chainid) {
        chainid = block.chainid;
    }
}
