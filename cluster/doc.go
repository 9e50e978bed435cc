// Package cluster owns membership and agreement for shoal server nodes:
// gossip membership with hashicorp/memberlist, the Raft log that replicates
// the catalogue (cluster/catalog) with hashicorp/raft and raft-wal, the voter
// manager built on raft-autopilot, and the single place where a write made
// on a follower is forwarded to the leader.
//
// Reads never go through this package's network paths: consumers read the
// local replica returned by Catalog(). A linearizable read first calls
// ReadBarrier, which asks the leader for its commit index and waits until the
// local replica has applied it.
package cluster
