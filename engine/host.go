package engine

import (
	"net"
	"os"
	"strings"

	"medic/rules"
)

// localHost describes the machine medic runs on, for the conditions of
// the runbooks whose tools act on it.
func localHost() rules.Host {
	name, err := os.Hostname()
	if err != nil {
		name = "localhost"
	}
	h := rules.Host{Name: name, Names: []string{name, "localhost"}}
	if short, _, ok := strings.Cut(name, "."); ok {
		h.Names = append(h.Names, short)
	}
	addrs, _ := net.InterfaceAddrs()
	seen := map[string]bool{}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		s := ipn.IP.String()
		if ipn.IP.To4() == nil {
			s = "[" + s + "]"
		}
		if !seen[s] {
			seen[s] = true
			h.Names = append(h.Names, s)
		}
	}
	for _, loop := range []string{"127.0.0.1", "[::1]"} {
		if !seen[loop] {
			h.Names = append(h.Names, loop)
		}
	}
	return h
}
