package check

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/internal/termsafe"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
)

// maxSessions is how many SFTP sessions the check tries to open on one
// connection: one for the uploads and the eight that prepcast flushes
// files through (targets/sftp's syncSessions).
const maxSessions = 9

// extensions are the SFTP extensions the check reports, those prepcast
// uses first.
var extensions = []struct {
	name, use string
	required  bool
}{
	{"posix-rename@openssh.com", "atomic switch of every file (required)", true},
	{"fsync@openssh.com", "flushes uploads to disk before the pointer switches", false},
	{"statvfs@openssh.com", "free disk before staging", false},
	{"hardlink@openssh.com", "", false},
	{"copy-data", "", false},
	{"lsetstat@openssh.com", "", false},
	{"limits@openssh.com", "", false},
	{"expand-path@openssh.com", "", false},
}

// readBanner connects to addr and reads the SSH server's identification
// line ("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13"), bounded in time and size.
func readBanner(ctx context.Context, addr string, timeout time.Duration) (string, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("dial %s: %w", addr, err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(timeout))
	br := bufio.NewReaderSize(nc, 1024)
	for i := 0; i < 16; i++ { // RFC 4253 lets a server send other lines first
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", fmt.Errorf("read the SSH banner of %s: %w", addr, err)
		}
		if s := strings.TrimRight(string(line), "\r\n"); strings.HasPrefix(s, "SSH-") {
			return termsafe.Clip(s, 200), nil
		}
	}
	return "", fmt.Errorf("%s sent no SSH banner in its first 16 lines", addr)
}

// osFromBanner names the operating system a banner's comment reveals, if
// any: OpenSSH packages append their distribution ("Ubuntu-3ubuntu13").
func osFromBanner(b string) string {
	low := strings.ToLower(b)
	for _, o := range []struct{ key, name string }{
		{"ubuntu", "Linux (Ubuntu)"}, {"debian", "Linux (Debian)"}, {"raspbian", "Linux (Raspbian)"},
		{"freebsd", "FreeBSD"}, {"openbsd", "OpenBSD"}, {"netbsd", "NetBSD"}, {"windows", "Windows"},
		{"rhel", "Linux (Red Hat)"}, {"el8", "Linux (Red Hat)"}, {"el9", "Linux (Red Hat)"},
	} {
		if strings.Contains(low, o.key) {
			return o.name
		}
	}
	return ""
}

// probeConn is the check's own SSH connection, with the same pinned host
// key and keys as the target's: what targets/sftp does not expose (every
// extension, extra sessions, chmod, lstat).
type probeConn struct {
	ssh    *ssh.Client
	sftp   *pkgsftp.Client
	shared bool // the target's own: closed with it
}

func (p *probeConn) Close() {
	if p.shared {
		return
	}
	_ = p.sftp.Close()
	_ = p.ssh.Close()
}

// sharedProbe inspects the server through tgt's own connection: a server
// that allows one connection per user (MySecureShell's
// LimitConnectionByUser 1, as Debian ships it) refuses a second one.
func sharedProbe(ctx context.Context, tgt *sftptarget.Target) (*probeConn, error) {
	sc, fc, err := tgt.Clients(ctx)
	if err != nil {
		return nil, err
	}
	return &probeConn{ssh: sc, sftp: fc, shared: true}, nil
}

// openProbe opens the check's own connection through tgt, with exactly
// the host key pinning and the keys of a push (targets/sftp's DialSSH).
func openProbe(ctx context.Context, tgt *sftptarget.Target) (*probeConn, error) {
	client, err := tgt.DialSSH(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	sc, err := pkgsftp.NewClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("start the sftp subsystem: %w", err)
	}
	return &probeConn{ssh: client, sftp: sc}, nil
}

// sessions opens extra SFTP sessions on p's connection, up to maxSessions
// in all, closes them, and returns how many were open at once (the first
// included) and the refusal that stopped it, if any.
func (p *probeConn) sessions() (int, error) {
	var extra []*pkgsftp.Client
	defer func() {
		for _, c := range extra {
			_ = c.Close()
		}
	}()
	for 1+len(extra) < maxSessions {
		c, err := pkgsftp.NewClient(p.ssh)
		if err != nil {
			return 1 + len(extra), err
		}
		extra = append(extra, c)
	}
	return maxSessions, nil
}

// extensionsRow reports the SFTP extensions the server offers. A target
// that opts in to non-atomic replaces (allow_non_atomic_replace) is
// published to without posix-rename: its absence is then a warning.
func extensionsRow(p *probeConn, nonAtomicOK bool) (Row, map[string]bool) {
	has := map[string]bool{}
	var offered, missing []string
	row := Row{ID: RowSFTPExtensions, Verdict: Pass, Threshold: "posix-rename@openssh.com"}
	for _, e := range extensions {
		_, ok := p.sftp.HasExtension(e.name)
		has[e.name] = ok
		short := strings.TrimSuffix(e.name, "@openssh.com")
		if ok {
			offered = append(offered, short)
			continue
		}
		if e.use != "" {
			missing = append(missing, fmt.Sprintf("%s (%s)", short, e.use))
		}
		switch {
		case e.required && !nonAtomicOK:
			row.Verdict = Fail
		case e.required:
			row.Verdict = Warn
			missing[len(missing)-1] += "; allow_non_atomic_replace is set: a replaced file is missing for about one round trip"
		case e.use != "" && row.Verdict == Pass:
			row.Verdict = Warn
		}
	}
	row.Value = strings.Join(offered, ", ")
	if row.Value == "" {
		row.Value = "none"
	}
	if len(missing) > 0 {
		row.Detail = "missing: " + strings.Join(missing, "; ")
	}
	switch {
	case row.Verdict == Fail || !has["posix-rename@openssh.com"]:
		row.Fix = fixPosixRename
	case row.Verdict == Warn:
		row.Fix = fixExtensions
	}
	return row, has
}

// pushModeRow says how prepcast will push to this server given what it
// offers.
func pushModeRow(tc *config.Target, filesInFlight, sessions int, has map[string]bool) Row {
	row := Row{ID: RowPushMode, Verdict: Pass}
	if tc.Mode == config.ModeExec {
		row.Value = "exec (package mode): one signed package per cut to \"" + termsafe.Clip(tc.ApplyCommand, 80) + "\"; SFTP for probes"
		return row
	}
	var parts []string
	parts = append(parts, fmt.Sprintf("sftp, %d files in flight on one connection", filesInFlight))
	switch {
	case !has["fsync@openssh.com"]:
		parts = append(parts, "no fsync (the server cannot flush uploads to disk)")
		row.Verdict = Warn
	case sessions > 1:
		parts = append(parts, fmt.Sprintf("fsync through %d extra sessions", min(sessions-1, maxSessions-1)))
	default:
		parts = append(parts, "fsync on the upload session (slower: the server allows one session per connection)")
		row.Verdict = Warn
	}
	if has["statvfs@openssh.com"] {
		parts = append(parts, "free space checked before staging")
	} else {
		parts = append(parts, "no free-space check before staging")
	}
	row.Value = strings.Join(parts, "; ")
	return row
}
