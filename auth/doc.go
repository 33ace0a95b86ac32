// Package auth finds out who calls a Loom daemon from the connection, and
// decides what that caller may do. Request fields never name the caller:
// the user, uid and gid a client writes into a request are not believed.
//
// # Where identity comes from
//
// A server accepts user calls in one of two modes, the auth setting of its
// configuration (Config.Mode):
//
//   - "munge", the production default. The client attaches a MUNGE
//     credential to every call (MungeCredentials, metadata loom-munge),
//     made by the munged of its host, which seals the uid and gid of the
//     calling process with the key every host of the cluster shares. The
//     server has its own munged decode it (package munge). munged refuses
//     a credential it has seen (replayed), an old one (expired), one from
//     the future (rewound) and one sealed with another key. The payload of
//     each credential is the call's full gRPC method name, so a credential
//     serves one call of one method only; a fresh one is made for each
//     call.
//   - "local". The server listens on a Unix socket (ListenLocal) with
//     PeerCredentials, and the kernel tells it the uid and gid of the
//     process that connected (SO_PEERCRED). loom dev uses it, so a second
//     user of the machine cannot act as the one who started it. In this
//     mode user calls over TCP are refused.
//
// A server in munge mode may also keep a local socket: peer credentials
// are accepted in either mode, and they alone make an Identity Local.
//
// An Authenticator (NewAuthenticator) runs as a unary and a stream server
// interceptor. It puts the caller's Identity in the call's context, where
// handlers read it with FromContext, or refuses the call with
// codes.Unauthenticated and a message that says what to do. Methods that
// daemons call each other, authenticated by their certificates, are listed
// in Config.Exempt and carry no Identity.
//
// # Forwarding
//
// A server that is not the leader forwards a user's call to the leader.
// The user's MUNGE credential is spent by then, so the forwarding server
// names the user it proved in forwarding metadata (ForwardContext:
// loom-forwarded-uid, loom-forwarded-gid, loom-forwarded-local). The
// leader believes that metadata only when Config.TrustForwarded says the
// peer is another server, which the wiring decides from the peer's mTLS
// certificate (package pki's role check). From any other peer forwarding
// metadata is refused with codes.PermissionDenied, never ignored and never
// believed.
//
// # Who may do what
//
// Policy holds the operators, by user and group name. The owner of a job
// and operators may act on it (CanActOnJob); root counts as an operator
// only when it connected through the local socket of the daemon's host
// (Identity.Local), so root on a compute node, which holds the MUNGE key,
// cannot act on other users' jobs through the servers. LookupUser resolves
// a uid through the host's NSS: the agent uses it to find a job's user,
// primary group and supplementary groups, and refuses a job whose uid does
// not resolve on its node.
//
// # Wiring
//
// A server, given its configuration:
//
//	a, err := auth.NewAuthenticator(auth.Config{
//		Mode:           auth.Mode(cfg.Auth), // "munge" or "local"
//		LocalSocket:    cfg.LocalSocket,
//		TrustForwarded: peerIsServer, // from the pki role check
//		Exempt:         daemonMethods,
//	})
//	srv := grpc.NewServer(
//		grpc.Creds(auth.LocalOr(serverTLS)), // peer credentials on the Unix socket
//		grpc.ChainUnaryInterceptor(a.UnaryInterceptor()),
//		grpc.ChainStreamInterceptor(a.StreamInterceptor()),
//	)
//	local, err := auth.ListenLocal(cfg.LocalSocket)
//	go srv.Serve(tcpListener)
//	go srv.Serve(local)
//
// A handler:
//
//	id, ok := auth.FromContext(ctx)
//	if !ok || !policy.CanActOnJob(id, job.Uid) { return status.Error(codes.PermissionDenied, …) }
//
// The CLI dials with grpc.WithPerRPCCredentials(auth.MungeCredentials{}) in
// munge mode, or dials "unix://"+socket with
// grpc.WithTransportCredentials(auth.PeerCredentials()) in local mode.
package auth
