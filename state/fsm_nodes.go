package state

import (
	"errors"
	"fmt"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

func applyRegisterNode(t *txn, m proto.Message) *Result {
	c := m.(*api.RegisterNodeCommand)
	if c.GetNode().GetName() == "" {
		return &Result{Err: malformed("RegisterNode without a node name")}
	}
	n := proto.Clone(c.Node).(*api.Node)
	old := t.node(n.Name)
	n.State, n.Reason = api.NodeState_IDLE, ""
	if old != nil {
		n.CreateIndex = old.CreateIndex
		if old.State == api.NodeState_DRAIN {
			n.State, n.Reason = old.State, old.Reason // an admin's drain outlives agent restarts
		}
	}
	n.RegisteredUnixMs = c.NowUnixMs
	n.UpdatedUnixMs = c.NowUnixMs
	t.putNode(n)
	return &Result{}
}

func applyNodeState(t *txn, m proto.Message) *Result {
	c := m.(*api.NodeStateCommand)
	old := t.node(c.Name)
	if old == nil {
		return &Result{Err: fmt.Errorf("node %q: %w", c.Name, ErrNodeNotFound)}
	}
	n := proto.Clone(old).(*api.Node)
	n.State, n.Reason = c.State, c.Reason
	if c.State == api.NodeState_IDLE {
		n.Reason = ""
	}
	n.UpdatedUnixMs = c.NowUnixMs
	t.putNode(n)
	if c.State == api.NodeState_DOWN {
		loseNodeTasks(t, c.Name, c.NowUnixMs)
	}
	return &Result{}
}

// loseNodeTasks ends every unfinished rank on a down node as LOST, which
// fails its gang (NODE_FAIL) and frees what it held.
func loseNodeTasks(t *txn, node string, now int64) {
	for j := range t.holdingJobs() {
		a := j.GetAllocation()
		var lost []uint32
		for i, r := range a.Ranks {
			if r.Node == node && !a.Tasks[i].Ended() {
				lost = append(lost, uint32(i))
			}
		}
		if len(lost) == 0 {
			continue
		}
		j = cloneJob(j)
		for _, i := range lost {
			j.Allocation.Tasks[i] = &api.TaskStatus{Rank: i, State: api.TaskState_TASK_EXITED,
				Reason: api.TaskEndReason_TASK_END_LOST, EndedUnixMs: now, Message: "node " + node + " is down"}
		}
		settleJob(j, now)
		t.putJob(j)
	}
}

func applyServerMembership(t *txn, m proto.Message) *Result {
	c := m.(*api.ServerMembershipCommand)
	sv := c.GetServer()
	if sv.GetId() == "" {
		return &Result{Err: errors.New("server membership without an id")}
	}
	if c.Remove {
		t.servers.Delete([]byte(sv.Id))
		return &Result{}
	}
	rec := &api.ServerInfo{Id: sv.Id, RaftAddr: sv.RaftAddr, RpcAddr: sv.RpcAddr, MetricsAddr: sv.MetricsAddr}
	t.servers.Insert([]byte(sv.Id), rec)
	return &Result{}
}
