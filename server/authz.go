package server

import (
	"context"
	"slices"
	"strconv"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/pki"
	"github.com/loomhpc/loom/pki/pkirpc"
	"github.com/loomhpc/loom/rankenv"
	"github.com/loomhpc/loom/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Who may call what. Every gRPC method a server serves has one rule in
// methodAccess, checked by one interceptor before the handler runs; a
// method without a rule is refused. Handlers then decide what a caller
// may do to a particular job (actorFor, canSee) or node (checkAgentNode).

// access is the rule of one method: who may call it.
type access int

const (
	// accessUser: any user the connection proves (MUNGE, peer
	// credentials, or identity forwarded by another server).
	accessUser access = iota + 1
	// accessOperator: operators only (operators, operator_groups, root on
	// a server host's local socket).
	accessOperator
	// accessServer: another server of the cluster (its certificate).
	accessServer
	// accessServerOrUser: another server, or any user (read-only status).
	accessServerOrUser
	// accessAgent: an agent (its certificate; the handler checks that it
	// acts for its own node), or a server forwarding an agent's call.
	accessAgent
)

func (a access) String() string {
	switch a {
	case accessUser:
		return "any user"
	case accessOperator:
		return "operators"
	case accessServer:
		return "servers"
	case accessServerOrUser:
		return "servers and users"
	case accessAgent:
		return "agents"
	}
	return "access(" + strconv.Itoa(int(a)) + ")"
}

// methodAccess is the one table of who may call each method.
var methodAccess = map[string]access{
	apirpc.JobService_Submit_FullMethodName:             accessUser,
	apirpc.JobService_Cancel_FullMethodName:             accessUser, // owner or operator: actorFor
	apirpc.JobService_Hold_FullMethodName:               accessUser, // owner or operator: actorFor
	apirpc.JobService_Requeue_FullMethodName:            accessUser, // owner or operator: actorFor
	apirpc.JobService_GetJob_FullMethodName:             accessUser, // private fields: canSee
	apirpc.JobService_ListJobs_FullMethodName:           accessUser, // private fields: canSee
	apirpc.JobService_StreamLogs_FullMethodName:         accessUser, // owner or operator: canSee
	apirpc.JobService_CreateStep_FullMethodName:         accessUser, // owner or operator: actorFor
	apirpc.JobService_CancelSteps_FullMethodName:        accessUser, // owner or operator: actorFor
	apirpc.JobService_CompleteAllocation_FullMethodName: accessUser, // owner or operator: actorFor
	apirpc.JobService_UpdateJob_FullMethodName:          accessUser, // owner or operator: actorFor; raising a time limit: the FSM
	apirpc.JobService_TestSubmit_FullMethodName:         accessUser,

	apirpc.NodeService_ListNodes_FullMethodName:  accessUser,
	apirpc.NodeService_GetNode_FullMethodName:    accessUser,
	apirpc.NodeService_DrainNode_FullMethodName:  accessOperator,
	apirpc.NodeService_ResumeNode_FullMethodName: accessOperator,

	apirpc.AgentService_Register_FullMethodName:         accessAgent,
	apirpc.AgentService_WatchAllocations_FullMethodName: accessAgent,
	apirpc.AgentService_UpdateTasks_FullMethodName:      accessAgent,

	apirpc.Operator_RaftJoin_FullMethodName:        accessServer,
	apirpc.Operator_RaftListPeers_FullMethodName:   accessOperator,
	apirpc.Operator_RaftRemovePeer_FullMethodName:  accessOperator,
	apirpc.Operator_ServerStatus_FullMethodName:    accessServerOrUser,
	apirpc.Operator_SnapshotSave_FullMethodName:    accessOperator,
	apirpc.Operator_SnapshotRestore_FullMethodName: accessOperator,
	apirpc.Operator_GetConfig_FullMethodName:       accessUser,
	apirpc.Operator_ReloadConfig_FullMethodName:    accessOperator,

	apirpc.ReservationService_CreateReservation_FullMethodName: accessOperator,
	apirpc.ReservationService_UpdateReservation_FullMethodName: accessOperator,
	apirpc.ReservationService_DeleteReservation_FullMethodName: accessOperator,
	apirpc.ReservationService_ListReservations_FullMethodName:  accessUser,
}

// newAuthenticator makes the Authenticator that proves users. Every
// method is exempt from its own interceptors: admit calls Identify for
// the methods whose rule needs a user.
func (s *Server) newAuthenticator() (*auth.Authenticator, error) {
	mode := s.cfg.Auth
	if mode == "" {
		mode = auth.ModeMunge
	}
	return auth.NewAuthenticator(auth.Config{
		Mode:           mode,
		Munge:          s.cfg.Munge,
		LocalSocket:    s.cfg.LocalSocket,
		TrustForwarded: s.peerIsServer,
	})
}

// peerIsServer reports whether the peer of a call holds a server
// certificate of the cluster's CA. Without TLS (tls = false) every peer
// is taken for a server: the configuration said the network is trusted.
func (s *Server) peerIsServer(ctx context.Context) bool {
	if s.cfg.TLS == nil {
		return true
	}
	id, err := pkirpc.PeerIdentityFromContext(ctx)
	return err == nil && id.Role == pki.RoleServer
}

// admit applies the method's rule: it returns ctx with the caller's
// Identity for user calls, ctx itself for daemon calls, or a status error.
func (s *Server) admit(ctx context.Context, method string) (context.Context, error) {
	rule, ok := methodAccess[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "%s: this server has no access rule for the method, so nobody may call it", method)
	}
	switch rule {
	case accessServer:
		return ctx, s.requireDaemon(ctx, method, pki.RoleServer)
	case accessAgent:
		return ctx, s.requireDaemon(ctx, method, pki.RoleAgent, pki.RoleServer)
	case accessServerOrUser:
		if s.peerIsServer(ctx) {
			return ctx, nil
		}
	}
	id, err := s.auth.Identify(ctx, method)
	if err != nil {
		return nil, err
	}
	if rule == accessOperator && !s.cfg.Policy.IsOperator(id) {
		return nil, status.Errorf(codes.PermissionDenied, "%s: only operators may do this, and %s is not one (operators and operator_groups in the servers' configuration)", method, id)
	}
	return auth.NewContext(ctx, id), nil
}

// requireDaemon checks that the caller holds a certificate of one of
// roles. With tls = false there are no certificates and every daemon call
// is admitted.
func (s *Server) requireDaemon(ctx context.Context, method string, roles ...pki.Role) error {
	if s.cfg.TLS == nil {
		return nil
	}
	if _, err := pkirpc.RequireRole(ctx, roles...); err != nil {
		st := status.Convert(err)
		return status.Errorf(st.Code(), "%s: %s", method, st.Message())
	}
	return nil
}

// checkAgentNode refuses an agent's call made for another node than the
// one its certificate names. A server's certificate passes: it forwards
// a call whose agent it checked.
func (s *Server) checkAgentNode(ctx context.Context, node string) error {
	if s.cfg.TLS == nil {
		return nil
	}
	id, err := pkirpc.PeerIdentityFromContext(ctx)
	if err == nil && id.Role == pki.RoleServer {
		return nil
	}
	return pkirpc.RequireAgent(ctx, node)
}

func (s *Server) unaryAdmit(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) streamAdmit(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, auth.WithContext(ss, ctx))
}

// caller returns the user the interceptor proved for a user call.
func caller(ctx context.Context) (auth.Identity, error) {
	id, ok := auth.FromContext(ctx)
	if !ok || !id.Valid() {
		return auth.Identity{}, status.Error(codes.Unauthenticated, "no caller identity")
	}
	return id, nil
}

// userName is the name of uid on this server's host, or the number when
// it does not resolve here (the agents resolve it again on their nodes).
func (s *Server) userName(uid uint32) string {
	dir := s.cfg.Policy.Directory
	if dir == nil {
		dir = auth.NSS{}
	}
	if u, err := dir.LookupUser(uid); err == nil {
		return u.Name
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// inGroup returns whether the caller of ctx is in a group, by name: its
// primary group as the connection proves it, or any group the directory
// lists for it. Operators are in every group, as root and SlurmUser pass
// Slurm's AllowGroups.
func (s *Server) inGroup(ctx context.Context) func(string) bool {
	id, err := caller(ctx)
	if err != nil {
		return func(string) bool { return false }
	}
	if s.cfg.Policy.IsOperator(id) {
		return func(string) bool { return true }
	}
	dir := s.cfg.Policy.Directory
	if dir == nil {
		dir = auth.NSS{}
	}
	u, _ := dir.LookupUser(id.UID)
	return func(name string) bool {
		gid, err := dir.LookupGroup(name)
		return err == nil && (gid == id.GID || slices.Contains(u.Groups, gid))
	}
}

// authorizeSubmit fills req's owner from the caller and gives the job its
// secret, and refuses what only operators may ask for.
func (s *Server) authorizeSubmit(ctx context.Context, req *api.SubmitRequest) error {
	id, err := caller(ctx)
	if err != nil {
		return err
	}
	if req.Spec.GetNice() < 0 && !s.cfg.Policy.IsOperator(id) {
		return status.Errorf(codes.PermissionDenied, "nice: %d: only operators may give a job a negative nice value (a higher priority)", req.Spec.GetNice())
	}
	if err := s.checkQOSAccess(id, req.Spec.GetQos()); err != nil {
		return err
	}
	req.Uid, req.Gid, req.User = id.UID, id.GID, s.userName(id.UID)
	req.JobSecret = rankenv.NewJobSecret()
	return nil
}

// checkQOSAccess refuses a QoS that qos_access keeps from the caller id.
func (s *Server) checkQOSAccess(id auth.Identity, q string) error {
	if q == "" {
		return nil
	}
	if p, restricted := s.cfg.QOSAccess[q]; restricted && !p.IsOperator(id) && !s.cfg.Policy.IsOperator(id) {
		return status.Errorf(codes.PermissionDenied, "qos: %q is not allowed for uid %d (qos_access in the servers' configuration)", q, id.UID)
	}
	return nil
}

// actorFor decides who the FSM acts as when the caller changes the jobs
// ids: uid 0 for an operator, who may change any job, or the caller's own
// uid, which the FSM compares with each job's owner. Owners never change,
// so the FSM's check on the uid decides for good. Root that is not an
// operator (root on a compute node, which holds the MUNGE key) would read
// as 0 there, so it may change only jobs that exist now and are its own.
func (s *Server) actorFor(ctx context.Context, ids []uint64) (uint32, error) {
	id, err := caller(ctx)
	if err != nil {
		return 0, err
	}
	if s.cfg.Policy.IsOperator(id) {
		return 0, nil
	}
	if id.UID == 0 {
		snap := s.State()
		for _, jid := range ids {
			j := snap.Job(jid)
			if j == nil || j.Uid != 0 {
				return 0, status.Errorf(codes.PermissionDenied, "job %d: root is an operator only on a server's own host (its local socket)", jid)
			}
		}
	}
	return id.UID, nil
}

// canSee reports whether the caller may see j's private fields (script,
// environment, output paths) and read its output: its owner and operators
// may, and with PublicData everyone may see the fields.
func (s *Server) canSee(id auth.Identity, j *api.Job, output bool) bool {
	if !output && s.cfg.PublicData {
		return true
	}
	return s.cfg.Policy.CanActOnJob(id, j.Uid)
}

// redact returns j as the caller may see it: never its secret, and its
// private fields only as canSee allows. j itself, shared with the state,
// is never changed.
func (s *Server) redact(id auth.Identity, j *api.Job) *api.Job {
	if j == nil {
		return nil
	}
	c := proto.Clone(j).(*api.Job)
	c.Secret = ""
	if s.canSee(id, j, false) {
		return c
	}
	hide := func(sp *api.JobSpec, a *api.Allocation) {
		if sp != nil {
			sp.Script, sp.Argv, sp.Env = "", nil, nil
			sp.Output, sp.Error, sp.WorkingDir = "", "", ""
		}
		for _, t := range a.GetTasks() {
			t.OutputPath = ""
		}
	}
	hide(c.Spec, c.Allocation)
	for _, st := range c.Steps {
		hide(st.Spec, st.Allocation)
	}
	return c
}

// errNotYours is what a caller who may not act on a job is told.
func errNotYours(j *api.Job) error {
	return status.Errorf(codes.PermissionDenied, "job %d belongs to %s: %v", j.Id, j.User, state.ErrPermission)
}
