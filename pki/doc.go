// Package pki is the cluster's certificate authority, the role
// certificates it signs, and the mutual TLS that every connection between
// Loom daemons uses: server to server (gRPC and the Raft transport), agent
// to server, server to agent, and the CLI to a server.
//
// # Roles and names
//
// A certificate says who holds it through its DNS names, Nomad-style, under
// the pseudo-domain "loom" (Domain):
//
//	role     DNS names                                  files
//	server   server.loom, NAME.server.loom,             loom-server-NAME.pem
//	         localhost, 127.0.0.1 (--no-localhost)      loom-server-NAME-key.pem
//	agent    NODE.agent.loom                            loom-agent-NODE.pem, …-key.pem
//	cli      cli.loom                                   loom-cli.pem, loom-cli-key.pem
//
// plus any extra names and addresses the admin gives (--dns, --ip), which
// must lie outside the loom domain. Every certificate may serve and dial
// (server and client auth): servers dial each other and the agents.
// IdentityOf reads the role and node back strictly: every name in the loom
// domain must be a role name, and together they must name exactly one role
// and, for a server or agent, exactly one node; a certificate with several
// roles, several nodes or none is refused (ErrBadIdentity). Only
// certificates the CA verified count (PeerIdentity; pkirpc.PeerIdentityFromContext for a gRPC call).
//
// The CA is ECDSA P-256, valid 5 years (DefaultCADays), written as
// loom-ca.pem and loom-ca-key.pem (0600). Certificates are ECDSA P-256,
// valid 1 year (DefaultCertDays) but never past the CA. Keys are written
// 0600, and nothing is overwritten without Force (--force).
//
// # What each daemon presents and accepts
//
// Every daemon is configured with Files{CA, Cert, Key}: the CA certificate
// and its own certificate and key. All configs require TLS 1.3.
//
//   - A server's gRPC port serves users, agents and other servers, so it
//     uses ServerConfig with ClientCertIfGiven: a client certificate, if
//     presented, must be the CA's and name one role; users without one
//     authenticate with MUNGE (package auth). Each method then admits its
//     callers: pkirpc.RequireRole(ctx, RoleServer) for server-to-server calls
//     (forwarding to the leader, membership), pkirpc.RequireAgent(ctx, node) for
//     agent calls that name a node (register, heartbeat, status reports),
//     so that the agent of node7 cannot act for node8. Both return gRPC
//     status errors: Unauthenticated without a verified certificate,
//     PermissionDenied for the wrong role or node.
//   - A server's Raft port uses RaftLayer, which takes ServerConfig with
//     ClientCertRequired and Roles server on Accept, and on Dial requires a
//     server certificate: only servers of this CA can join Raft. Each
//     refused connection is logged with its reason.
//   - An agent's gRPC port (logs, exec) is called by servers only:
//     ServerConfig with ClientCertRequired and Roles server.
//   - A server or agent dialing a server uses DaemonClientConfig: it
//     presents its certificate and requires server.loom (and role server)
//     whatever address it dialed. A server dialing the agent of a node uses
//     AgentClientConfig(files, node), which requires NODE.agent.loom.
//   - The CLI uses CLIClientConfig: it requires server.loom and presents a
//     cli certificate if Files names one.
//
// At start a daemon should call Files.Identity and refuse to run with a
// certificate of another role or node (an agent named node7 holding
// node8's certificate).
//
// # Wiring (for the server, agent, raft and CLI owners)
//
//	creds := credentials.NewTLS(cfg) // google.golang.org/grpc/credentials
//	grpc.NewServer(grpc.Creds(creds))                 // cfg from ServerConfig
//	grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
//
//	ln, _ := net.Listen("tcp", raftBind)
//	layer, err := pki.NewRaftLayer(ln, files, pki.RaftLayerOptions{Advertise: adv, Logger: log})
//	transport := hraft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, hlog)
//
// The `loom tls` command is Command: register it in the command table as
// `loom tls` with the arguments after "tls". Plaintext stays possible only
// when the configuration says tls = false explicitly; each daemon then logs
// a warning at start. That switch, and the tls_ca, tls_cert and tls_key
// settings that fill Files, belong to the daemons' configuration.
//
// # Admin recipe
//
// On one trusted host, which keeps the CA key:
//
//	loom tls ca create --dir /etc/loom/ca
//	loom tls cert create --server s1 --ca-dir /etc/loom/ca --dir out --dns s1.example.org --ip 10.0.0.1
//	loom tls cert create --agent node7 --ca-dir /etc/loom/ca --dir out
//	loom tls cert create --cli --ca-dir /etc/loom/ca --dir out
//
// Then copy loom-ca.pem to every host, and each server's and agent's own
// certificate and key to that host only (for example /etc/loom/tls/, key
// 0600, readable by the daemon). A CLI host gets loom-ca.pem, and
// loom-cli.pem with its key only where the CLI should present a
// certificate. A new node needs only a new agent certificate; renewing is
// running cert create again with --force and restarting the daemon (files
// are not reloaded while it runs).
package pki
