package harness

import (
	"fmt"
	"net"
)

// FreePort returns a loopback TCP port nothing listens on right now. The
// port is only free, not reserved: start what uses it soon.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("harness: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeAddr returns ip:port for a port FreePort found; ip "" means
// 127.0.0.1.
func FreeAddr(ip string) (string, error) {
	if ip == "" {
		ip = "127.0.0.1"
	}
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip, fmt.Sprint(port)), nil
}
