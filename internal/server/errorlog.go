package server

import (
	"io"
	"log"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
)

// errorLog is the http.Server's ErrorLog: net/http's own lines (such as
// "http: TLS handshake error from 192.0.2.1:5678: EOF" and "http: panic
// serving 192.0.2.1:5678: ...") go to the server's logger at level warn,
// with every IP address and its port replaced by redactedAddr when redact
// is set, since docs/data-inventory.md promises logs carry no IP address
// unless the operator asks for them (Config.LogIPs).
func errorLog(h slog.Handler, redact bool) *log.Logger {
	w := slog.NewLogLogger(h, slog.LevelWarn).Writer()
	if redact {
		w = addrRedactor{w}
	}
	return log.New(w, "", 0)
}

// redactedAddr stands for an address in the error log.
const redactedAddr = "[address]"

// addrPattern matches what may be an IP address, with or without a port:
// a bracketed IPv6 address, dotted IPv4, or a run of hexadecimal groups and
// colons (checked by addrRedactor.redact, since times look alike).
var addrPattern = regexp.MustCompile(`\[[0-9A-Za-z:.%_-]*\](:[0-9]+)?` +
	`|[0-9]{1,3}(\.[0-9]{1,3}){3}(:[0-9]+)?` +
	`|[0-9A-Fa-f]*(:[0-9A-Fa-f]*){2,}[0-9A-Za-z.%_-]*`)

// addrRedactor writes every line to w with its IP addresses redacted.
type addrRedactor struct{ w io.Writer }

func (a addrRedactor) Write(p []byte) (int, error) {
	if _, err := io.WriteString(a.w, redactAddrs(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// redactAddrs replaces the IP addresses (and ports) in s by redactedAddr.
func redactAddrs(s string) string {
	return addrPattern.ReplaceAllStringFunc(s, func(m string) string {
		if m[0] == '[' || !strings.Contains(m, "::") && strings.Count(m, ":") < 2 {
			return redactedAddr // bracketed, or dotted IPv4
		}
		// Unbracketed colon groups: an IPv6 address, possibly followed by
		// the colon that ends net/http's "from ADDR:" (times do not parse).
		t := strings.TrimRight(m, ":")
		if _, err := netip.ParseAddr(t); err == nil {
			return redactedAddr + m[len(t):]
		}
		return m
	})
}
