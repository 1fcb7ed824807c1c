package engine

import (
	"fmt"
	"net"
	"os"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
)

// Exposure says how the listener is protected.
type Exposure struct {
	Loopback bool
	// Auth names the mechanisms in force: "bearer token", "basic auth",
	// "client certificates".
	Auth []string
}

// CheckExposure enforces secure defaults: a listener reachable from other
// hosts needs a bearer token, basic auth or client certificates, unless
// Insecure says otherwise. It also validates the web config file.
func CheckExposure(c WebConfig) (Exposure, error) {
	var x Exposure
	host, _, err := net.SplitHostPort(c.ListenAddress)
	if err != nil {
		return x, fmt.Errorf("listen address %q: %w", c.ListenAddress, err)
	}
	if host == "localhost" {
		x.Loopback = true
	} else if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		x.Loopback = true
	}
	if c.BearerTokenFile != "" {
		x.Auth = append(x.Auth, "bearer token")
	}
	if c.ConfigFile != "" {
		if err := web.Validate(c.ConfigFile); err != nil {
			return x, fmt.Errorf("web config file %s: %w", c.ConfigFile, err)
		}
		raw, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			return x, fmt.Errorf("web config file: %w", err)
		}
		var wc web.Config
		if err := yaml.Unmarshal(raw, &wc); err != nil {
			return x, fmt.Errorf("web config file %s: %w", c.ConfigFile, err)
		}
		if len(wc.Users) > 0 {
			x.Auth = append(x.Auth, "basic auth")
		}
		if wc.TLSConfig.ClientAuth == "RequireAndVerifyClientCert" {
			x.Auth = append(x.Auth, "client certificates")
		}
	}
	if len(x.Auth) == 0 && !x.Loopback && !c.Insecure {
		return x, fmt.Errorf("refusing to listen on %s with no authentication: set web.bearer_token_file, basic_auth_users or client certificates in the web config file, or pass --web.insecure", c.ListenAddress)
	}
	return x, nil
}
