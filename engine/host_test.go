package engine

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestLocalHost(t *testing.T) {
	h := localHost()
	name, _ := os.Hostname()
	if h.Name != name {
		t.Errorf("name %q, want the kernel's node name %q", h.Name, name)
	}
	for _, want := range []string{name, "localhost", "127.0.0.1", "[::1]"} {
		if !slices.Contains(h.Names, want) {
			t.Errorf("names %v lack %q", h.Names, want)
		}
	}
	for _, n := range h.Names {
		if strings.Contains(n, ":") && !strings.HasPrefix(n, "[") {
			t.Errorf("IPv6 address %q without brackets could not prefix an instance label", n)
		}
	}
}
