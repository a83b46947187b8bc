-- hitvault schema version 6: the cluster's state machine.
-- One row (id 1) once the node has applied anything from the cluster's
-- replicated log: the state after the last applied entry (its log id, the
-- membership, each origin node's highest hit id, the retired node ids), as
-- the cluster crate encodes it. It is written in the same transaction as
-- the rows the entries add, so a replay after a crash is exactly-once.
-- A node that never joined a cluster has no row.

CREATE TABLE cluster_state (
    id    INTEGER PRIMARY KEY,
    state BLOB NOT NULL
);
