package pki

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
)

const commandUsage = `Usage:
  loom tls ca create [--dir D] [--days N] [--force]
  loom tls cert create --server NAME | --agent NODE | --cli [flags]

Create the cluster's certificate authority, and certificates for servers,
agents and the CLI signed by it. Every Loom daemon connection is mutual
TLS: servers accept only server certificates on Raft and on server-to-server
calls, an agent's certificate acts for its own node only, and clients check
that they reached a server. Run "loom tls ca create --help" or
"loom tls cert create --help" for the flags.
`

const caUsage = `Usage: loom tls ca create [--dir D] [--days N] [--force]

Create a certificate authority: ` + CACertFile + ` (the CA certificate, which
every server, agent and CLI host needs) and ` + CAKeyFile + ` (its key, 0600:
keep it on the host where you create certificates and nowhere else).

  --dir D     write the files into D (default the current directory)
  --days N    validity in days (default %d)
  --force     replace existing files
  --help      show this help

Exit status: 0 on success, 1 on an error, 2 on a usage error.
`

const certUsage = `Usage: loom tls cert create --server NAME | --agent NODE | --cli [flags]

Create a certificate and key signed by the CA, named for its role and node:
  --server NAME  a server: names server.loom and NAME.server.loom (and
                 localhost, 127.0.0.1); files loom-server-NAME.pem and
                 loom-server-NAME-key.pem
  --agent NODE   the agent of node NODE: names NODE.agent.loom; files
                 loom-agent-NODE.pem and loom-agent-NODE-key.pem
  --cli          the command-line client: names cli.loom; files
                 loom-cli.pem and loom-cli-key.pem

  --ca-dir D      where the CA is (default the current directory)
  --dir D         write the files into D (default the current directory)
  --dns NAME      an extra DNS name (repeat, or separate with commas)
  --ip ADDR       an extra IP address (repeat, or separate with commas)
  --no-localhost  leave localhost and 127.0.0.1 out of a server certificate
  --days N        validity in days (default %d; never past the CA's)
  --force         replace existing files
  --help          show this help

Exit status: 0 on success, 1 on an error, 2 on a usage error.
`

// Command runs `loom tls` with args (the arguments after "tls") and
// returns the exit status: 0 on success, 1 on an error, 2 on a usage
// error.
func Command(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, commandUsage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, commandUsage)
		return 0
	}
	if len(args) < 2 || args[1] != "create" {
		fmt.Fprintf(stderr, "loom tls: unknown command %q\n\n%s", strings.Join(args[:min(2, len(args))], " "), commandUsage)
		return 2
	}
	switch args[0] {
	case "ca":
		return caCreate(args[2:], stdout, stderr)
	case "cert":
		return certCreate(args[2:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "loom tls: unknown command %q\n\n%s", args[0]+" create", commandUsage)
	return 2
}

// parse parses args into fs, printing help or the flag's error. It returns
// the exit status to return, or -1 to go on.
func parse(fs *flag.FlagSet, args []string, help string, stdout, stderr io.Writer) int {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, help)
			return 0
		}
		fmt.Fprintf(stderr, "%s: %v\n\n%s", fs.Name(), err, help)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n\n%s", fs.Name(), fs.Arg(0), help)
		return 2
	}
	return -1
}

func caCreate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom tls ca create", flag.ContinueOnError)
	dir := fs.String("dir", ".", "")
	days := fs.Int("days", DefaultCADays, "")
	force := fs.Bool("force", false, "")
	if rc := parse(fs, args, fmt.Sprintf(caUsage, DefaultCADays), stdout, stderr); rc >= 0 {
		return rc
	}
	if *days <= 0 {
		fmt.Fprintf(stderr, "%s: --days %d: want a positive number of days\n", fs.Name(), *days)
		return 2
	}
	ca, err := CreateCA(*dir, CAOptions{Days: *days, Force: *force})
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	fmt.Fprintf(stdout, "wrote %s: the CA certificate, valid until %s; copy it to every server, agent and CLI host\n",
		ca.CertFile, ca.Cert.NotAfter.UTC().Format("2006-01-02"))
	fmt.Fprintf(stdout, "wrote %s: the CA key (0600); keep it here and nowhere else\n", filepath.Join(*dir, CAKeyFile))
	return 0
}

func certCreate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom tls cert create", flag.ContinueOnError)
	server := fs.String("server", "", "")
	agent := fs.String("agent", "", "")
	cli := fs.Bool("cli", false, "")
	caDir := fs.String("ca-dir", ".", "")
	dir := fs.String("dir", ".", "")
	var dns, ips listFlag
	fs.Var(&dns, "dns", "")
	fs.Var(&ips, "ip", "")
	noLocal := fs.Bool("no-localhost", false, "")
	days := fs.Int("days", DefaultCertDays, "")
	force := fs.Bool("force", false, "")
	help := fmt.Sprintf(certUsage, DefaultCertDays)
	if rc := parse(fs, args, help, stdout, stderr); rc >= 0 {
		return rc
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
		return 2
	}

	var id Identity
	set := 0
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "server":
			id, set = Identity{Role: RoleServer, Node: *server}, set+1
		case "agent":
			id, set = Identity{Role: RoleAgent, Node: *agent}, set+1
		case "cli":
			if *cli {
				id, set = Identity{Role: RoleCLI}, set+1
			}
		}
	})
	switch {
	case set == 0:
		return usageErr("say which certificate: --server NAME, --agent NODE or --cli")
	case set > 1:
		return usageErr("use one of --server, --agent and --cli")
	}
	if id.Role != RoleCLI {
		if err := checkNodeName(id.Node); err != nil {
			return usageErr("--%s %q: %v", id.Role, id.Node, err)
		}
	}
	for _, name := range dns {
		if err := checkExtraDNS(name); err != nil {
			return usageErr("--dns: %v", err)
		}
	}
	var addrs []net.IP
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return usageErr("--ip: %q is not an IP address", s)
		}
		addrs = append(addrs, ip)
	}
	if *days <= 0 {
		return usageErr("--days %d: want a positive number of days", *days)
	}
	if *noLocal && id.Role != RoleServer {
		return usageErr("--no-localhost: only server certificates name localhost")
	}

	ca, err := LoadCA(*caDir)
	if err != nil {
		return fail(stderr, fs.Name(), fmt.Errorf("--ca-dir %s: %w (create one with loom tls ca create)", *caDir, err))
	}
	files, err := CreateCert(ca, id.Role, id.Node, CertOptions{
		Dir: *dir, DNS: dns, IPs: addrs, Days: *days, Force: *force, NoLocalhost: *noLocal,
	})
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	cert, err := readCert(files.Cert)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	names := append([]string(nil), cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	cut := ""
	if cert.NotAfter.Equal(ca.Cert.NotAfter) {
		cut = " (when the CA expires)"
	}
	fmt.Fprintf(stdout, "wrote %s: the certificate of %s (%s), valid until %s%s\n",
		files.Cert, id, strings.Join(names, ", "), cert.NotAfter.UTC().Format("2006-01-02"), cut)
	fmt.Fprintf(stdout, "wrote %s: its key (0600)\n", files.Key)
	return 0
}

func fail(stderr io.Writer, name string, err error) int {
	if errors.Is(err, ErrExists) {
		fmt.Fprintf(stderr, "%s: %v; use --force to replace it\n", name, err)
	} else {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
	}
	return 1
}

// listFlag collects a flag given several times, each value possibly a
// comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			return errors.New("empty value")
		}
		*l = append(*l, s)
	}
	return nil
}
