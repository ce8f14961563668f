package config

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prepcast/prepcast/internal/safepath"
	"golang.org/x/crypto/ssh"
)

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	envVarRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// logLevels are the accepted values of log.level.
var logLevels = []string{"debug", "info", "warn", "error"}

// Validate checks c's values and their relations and returns the errors.Join
// of a [*FieldError] per problem, or nil. It does not look at the
// filesystem; see [Config.CheckFiles]. [Parse] and [Load] call it; call it
// again after changing a Config.
func (c *Config) Validate() error {
	var e collector
	c.validate(&e)
	return e.err()
}

func (c *Config) validate(e *collector) {
	absPath(e, "source", c.Source, true, "the directory the PREP generator writes, e.g. /srv/prep/publicacion")
	absPath(e, "state_dir", c.StateDir, true, "a directory for prepcast's cut store and state, e.g. /var/lib/prepcast")
	absPath(e, "signing_key", c.SigningKey, true, `the private key written by "prepcast keygen"`)
	if c.Source == "/" {
		e.add("source", "is \"/\"; point source at the directory the PREP generator writes, e.g. /srv/prep/publicacion")
	}
	if c.Source != "" && c.StateDir != "" && !e.has("source") && !e.has("state_dir") {
		switch {
		case c.Source == c.StateDir:
			e.add("state_dir", "is the same directory as source; prepcast's store must live outside the results tree, e.g. /var/lib/prepcast")
		case within(c.StateDir, c.Source):
			e.add("state_dir", "%s is inside source %s, so every cut would copy the store into itself; move it outside, e.g. /var/lib/prepcast", c.StateDir, c.Source)
		case within(c.Source, c.StateDir):
			e.add("source", "%s is inside state_dir %s, prepcast's own store; point source at the directory the PREP generator writes", c.Source, c.StateDir)
		}
	}
	secretOutsideSource(e, c.Source, "signing_key", c.SigningKey)

	if c.Zone == nil {
		e.add("zone", "not loaded; use an IANA name such as %q", DefaultZone)
	} else if c.ZoneName == "" {
		e.add("zone", "has no name; use an IANA name such as %q", DefaultZone)
	}

	c.validatePointer(e)
	c.validateSchedule(e)
	c.validateCheck(e)

	if c.Retention.Cuts < 1 {
		e.add("retention.cuts", "is %d; keep at least 1 cut (default %d)", c.Retention.Cuts, DefaultRetentionCuts)
	}
	positive(e, "retention.window", c.Retention.Window, "files that leave a cut must stay on targets a while for clients still reading the previous cut", DefaultRetentionWindow)

	if c.Verify.Period < 0 {
		e.add("verify.period", "is negative; give the time within which every served file is re-read, e.g. 24h, or 0 to turn the rotating verification off")
	}
	if c.Verify.BytesPerPush < 0 {
		e.add("verify.bytes_per_push", "is negative; give a size such as 256MiB, or leave it out")
	}
	if c.Verify.TimePerPush < 0 {
		e.add("verify.time_per_push", "is negative; give how long a push may read back, e.g. 30s, or 0 for no bound")
	}
	if c.Verify.FilesPerPush < 0 {
		e.add("verify.files_per_push", "is %d; give a number of files such as 500, or leave it out", c.Verify.FilesPerPush)
	}

	nonNegativeRate(e, "limits.uplink", c.Limits.Uplink)
	nonNegativeRate(e, "limits.per_target", c.Limits.PerTarget)
	if c.Limits.TargetsInFlight < 1 {
		e.add("limits.targets_in_flight", "is %d; push at least 1 target at a time (default %d)", c.Limits.TargetsInFlight, DefaultTargetsInFlight)
	}
	if c.Limits.FilesInFlight < 1 {
		e.add("limits.files_in_flight", "is %d; keep at least 1 file in flight (default %d)", c.Limits.FilesInFlight, DefaultFilesInFlight)
	}

	positive(e, "max_lag", c.MaxLag, "status compares each target's lag against it", DefaultMaxLag)
	positive(e, "timeouts.dial", c.Timeouts.Dial, "it bounds each TCP connect", DefaultDialTimeout)
	positive(e, "timeouts.operation", c.Timeouts.Operation, "it bounds each SFTP request and the SSH handshake", DefaultOperation)
	positive(e, "timeouts.keepalive", c.Timeouts.Keepalive, "it is the SSH keepalive interval", DefaultKeepalive)
	positive(e, "timeouts.cycle", c.Timeouts.Cycle, "it bounds one push to one target", DefaultCycle)

	if c.Retry.Attempts < 1 {
		e.add("retry.attempts", "is %d; make at least 1 attempt (default %d)", c.Retry.Attempts, DefaultRetryAttempts)
	}
	positive(e, "retry.base", c.Retry.Base, "it is the first backoff", DefaultRetryBase)
	positive(e, "retry.max", c.Retry.Max, "it caps the backoff", DefaultRetryMax)
	if c.Retry.Base > 0 && c.Retry.Max > 0 && c.Retry.Max < c.Retry.Base && !e.has("retry.base") {
		e.add("retry.max", "%s is shorter than retry.base %s; make max at least base", fmtDur(c.Retry.Max), fmtDur(c.Retry.Base))
	}

	if err := checkListen(c.Listen); err != nil {
		e.add("listen", "%v", err)
	}

	if c.Log.File != "" || c.StateDir != "" {
		absPath(e, "log.file", c.Log.File, true, "a log file path, default <state_dir>/"+DefaultLogName)
	}
	// A log inside state_dir is covered by the state_dir checks.
	if c.Log.File != "" && !within(c.Log.File, c.StateDir) {
		secretOutsideSource(e, c.Source, "log.file", c.Log.File)
	}
	if !slices.Contains(logLevels, c.Log.Level) {
		e.add("log.level", "%q is not a log level; use one of %s (default %s)", c.Log.Level, strings.Join(logLevels, ", "), DefaultLogLevel)
	}

	c.validateTargets(e)
}

func (c *Config) validatePointer(e *collector) {
	if len(c.Pointer) == 0 {
		e.add("pointer", "lists no file; give at least one path in the results tree, e.g. %q (the default)", DefaultPointer)
		return
	}
	first := make(map[string]int)
	for i, p := range c.Pointer {
		field := "pointer"
		if len(c.Pointer) > 1 {
			field = fmt.Sprintf("pointer[%d]", i)
		}
		if err := safepath.Check(p); err != nil {
			e.add(field, "%v; give a slash path relative to the results tree, e.g. %q", err, DefaultPointer)
			continue
		}
		if j, dup := first[p]; dup {
			e.add(field, "%q is already pointer[%d]; list each pointer file once", p, j)
			continue
		}
		first[p] = i
	}
}

func (c *Config) validateSchedule(e *collector) {
	s := c.Schedule
	if s.Every < MinEvery {
		e.add("schedule.every", "%s is too short; a cycle builds a cut and pushes it to every target, use at least %s (default %s)", fmtDur(s.Every), fmtDur(MinEvery), fmtDur(DefaultEvery))
	}
	f := func(t time.Time) string { return t.Format(TimeLayout) }
	switch {
	case !s.Start.IsZero() && !s.End.IsZero() && !s.End.After(s.Start):
		e.add("schedule.end", "%s is not after schedule.start %s; the end must be later than the start", f(s.End), f(s.Start))
	case !s.End.IsZero() && !s.HoldUntil.IsZero() && s.HoldUntil.Before(s.End):
		e.add("schedule.hold_until", "%s is before schedule.end %s; hold_until must be at or after the end", f(s.HoldUntil), f(s.End))
	case !s.Start.IsZero() && !s.HoldUntil.IsZero() && !s.HoldUntil.After(s.Start):
		e.add("schedule.hold_until", "%s is not after schedule.start %s; hold_until must be later than the start", f(s.HoldUntil), f(s.Start))
	}
}

func (c *Config) validateTargets(e *collector) {
	names := make(map[string]int)
	// place is where an enabled target writes: server (host and port) and root.
	type place struct {
		server, root string
		idx          int
	}
	var places []place
	for i := range c.Targets {
		t := &c.Targets[i]
		f := func(name string) string { return fmt.Sprintf("targets[%d].%s", i, name) }

		switch {
		case t.Name == "":
			e.add(f("name"), "is required; name each difusor with lower-case letters, digits, '.', '_' or '-', e.g. \"diario-ejemplo\"")
		case !nameRE.MatchString(t.Name):
			e.add(f("name"), "%q is not a valid name; use 1 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. \"diario-ejemplo\"", t.Name)
		default:
			if j, dup := names[t.Name]; dup {
				e.add(f("name"), "%q is already the name of targets[%d]; names must be unique", t.Name, j)
			} else {
				names[t.Name] = i
			}
		}

		if t.Address == "" {
			e.add(f("address"), "is required; give the difusor's SSH server as host or host:port, e.g. \"sftp.diario.example:22\"")
		} else if n, err := normalizeAddress(t.Address); err != nil {
			e.add(f("address"), "%v", err)
		} else if n != t.Address {
			e.add(f("address"), "%q is not in normal form; write %q", t.Address, n)
		}

		if t.User == "" {
			e.add(f("user"), "is required; give the SSH user on the difusor, e.g. \"prep\"")
		} else if strings.ContainsFunc(t.User, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '@' }) || !utf8.ValidString(t.User) {
			e.add(f("user"), "%q is not a user name; give only the SSH user, e.g. \"prep\"", t.User)
		}

		if t.Agent != (t.IdentityFile == "") {
			e.add(f("identity_file"), "agent use does not match identity_file; set Agent exactly when identity_file is empty")
		}
		if t.IdentityFile != "" {
			absPath(e, f("identity_file"), t.IdentityFile, false, "")
			secretOutsideSource(e, c.Source, f("identity_file"), t.IdentityFile)
		}
		if t.PassphraseEnv != "" {
			switch {
			case !envVarRE.MatchString(t.PassphraseEnv):
				// Never echo the value: it may be the passphrase itself.
				e.add(f("passphrase_env"), "is not an environment variable name (the value is not shown: it may be the passphrase itself); put the passphrase in an environment variable and set passphrase_env to that variable's name, letters, digits and '_', e.g. \"PREPCAST_KEY_PASSPHRASE\"")
			case t.IdentityFile == "":
				e.add(f("passphrase_env"), "is set but identity_file is not; keys in ssh-agent are unlocked by the agent, so remove passphrase_env or set identity_file")
			}
		}

		switch {
		case t.KnownHosts == "" && t.HostKey == "":
			e.add(f("known_hosts"), "set known_hosts (a file from \"ssh-keyscan\" whose fingerprint you checked with the difusor) or host_key (\"ssh-ed25519 AAAA...\"); prepcast never trusts an unknown host key")
		case t.KnownHosts != "" && t.HostKey != "":
			e.add(f("host_key"), "is set together with known_hosts; set only one of them")
		case t.KnownHosts != "":
			absPath(e, f("known_hosts"), t.KnownHosts, false, "")
			secretOutsideSource(e, c.Source, f("known_hosts"), t.KnownHosts)
		default:
			if err := checkHostKey(t.HostKey); err != nil {
				e.add(f("host_key"), "%v", err)
			}
		}

		if err := checkRoot(t.Root); err != nil {
			e.add(f("root"), "%v", err)
		}
		nonNegativeRate(e, f("limit"), t.Limit)
		switch t.Mode {
		case ModeSFTP, ModeExec:
		default:
			e.add(f("mode"), "%q is not a mode; use %q (upload files over SFTP, the default) or %q (stream packages to \"prepcast apply\" on the difusor)", t.Mode, ModeSFTP, ModeExec)
		}
		if t.Mode != ModeExec && t.ApplyCommand != "" {
			e.add(f("apply_command"), "is only used with mode: %s; remove it or set mode: %s", ModeExec, ModeExec)
		}
		if strings.ContainsAny(t.ApplyCommand, "\n\r\x00") {
			e.add(f("apply_command"), "must be one line")
		}
		if t.URL != "" {
			if err := checkSiteURL(t.URL); err != nil {
				e.add(f("url"), "%v", err)
			}
		}
		if t.FileMode&0o444 != 0o444 {
			e.add(f("file_mode"), "%04o does not let the web server read the files; use 0644 (or 0444)", t.FileMode)
		}
		publicText(e, f("display_name"), t.DisplayName, 100, "the name shown in the public list, e.g. \"Diario Ejemplo\"")
		publicText(e, f("contact"), t.Contact, 200, "how to reach the difusor's administrators, e.g. \"sistemas@diario.example\"")
		if t.Logo != "" {
			absPath(e, f("logo"), t.Logo, false, "")
			if t.URL == "" {
				e.add(f("logo"), "is set but url is not; the public list links each logo to the difusor's site, so set url")
			}
		}
		if t.DirMode&0o555 != 0o555 {
			e.add(f("dir_mode"), "%04o does not let the web server enter the directories; use 0755 (or 0555)", t.DirMode)
		}
		if t.FileMode&0o200 == 0 || t.DirMode&0o700 != 0o700 {
			e.add(f("file_mode"), "file_mode %04o / dir_mode %04o must leave the SFTP account able to write (u+w on files, u+rwx on directories): prepcast replaces files at every cut", t.FileMode, t.DirMode)
		}

		if t.FsyncSessions < 0 || t.FsyncSessions > MaxFsyncSessions {
			e.add(f("fsync_sessions"), "%d is out of range; use 0 (flush on the main session) to %d, default %d", t.FsyncSessions, MaxFsyncSessions, DefaultFsyncSessions)
		}

		if t.Disabled || t.Address == "" || e.has(f("address")) || e.has(f("root")) {
			continue
		}
		host, port, _ := net.SplitHostPort(t.Address)
		p := place{server: strings.ToLower(host) + " " + port, root: t.Root, idx: i}
		for _, q := range places {
			if q.server != p.server {
				continue
			}
			if q.root == p.root {
				e.add(f("root"), "targets[%d] already pushes to %s on %s; two targets on one root would fight over one ack, remove one or set disabled: true", q.idx, t.Root, t.Address)
				break
			}
			if within(p.root, q.root) || within(q.root, p.root) {
				e.add(f("root"), "%s and the root %s of targets[%d] on %s are nested; give each target its own directory", t.Root, q.root, q.idx, t.Address)
				break
			}
		}
		places = append(places, p)
	}
}

// absPath reports p unless it is an absolute, clean path. An empty p is
// reported only when required.
func absPath(e *collector, field, p string, required bool, what string) {
	switch {
	case p == "":
		if required {
			e.add(field, "is required; give %s", what)
		}
	case !filepath.IsAbs(p) || filepath.Clean(p) != p:
		e.add(field, "%q is not an absolute clean path; write it in full, e.g. %q", p, filepath.Clean("/"+p))
	case strings.ContainsRune(p, 0):
		e.add(field, "%q contains a NUL byte; write a plain path", p)
	}
}

// secretOutsideSource reports a key or host file inside the results tree:
// the next cut would publish it to every difusor.
func secretOutsideSource(e *collector, source, field, p string) {
	if source != "" && p != "" && within(p, source) && !e.has(field) && !e.has("source") {
		e.add(field, "%s is inside source %s, so it would be published to every difusor; move it out of the results tree", p, source)
	}
}

func positive(e *collector, field string, d time.Duration, why string, def time.Duration) {
	if d <= 0 {
		e.add(field, "%s is not positive; %s, so write e.g. %q (the default)", fmtDur(d), why, fmtDur(def))
	}
}

func nonNegativeRate(e *collector, field string, r int64) {
	if r < 0 {
		e.add(field, "is negative; %s", rateExamples)
	}
}

// within reports whether p is dir or lies below it; both are clean paths,
// and an empty one is within nothing.
func within(p, dir string) bool {
	if p == "" || dir == "" {
		return false
	}
	if p == dir {
		return true
	}
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, dir+"/")
}

// normalizeAddress returns a as host:port, adding port 22 when a has none.
// It accepts "host", "host:port", "1.2.3.4", "[::1]", "[::1]:22" and "::1".
func normalizeAddress(a string) (string, error) {
	const how = "give the SSH server as host or host:port, e.g. \"sftp.diario.example:22\" or \"[2001:db8::1]:22\""
	bad := func(why string) error { return fmt.Errorf("%q %s; %s", a, why, how) }
	switch {
	case strings.Contains(a, "://"):
		return "", bad("has a scheme")
	case strings.Contains(a, "@"):
		return "", fmt.Errorf("%q contains '@'; put the user name in user and only the host (and port) in address", a)
	case strings.Contains(a, "/"):
		return "", fmt.Errorf("%q contains '/'; put the remote directory in root and only the host (and port) in address", a)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		host, port = a, DefaultPort
		switch {
		case strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]"):
			host = a[1 : len(a)-1]
		case strings.Count(a, ":") >= 2:
			// a bare IPv6 address; checked below
		case strings.Contains(a, ":"):
			return "", bad("is not host:port")
		}
		if strings.ContainsAny(host, "[]") {
			return "", bad("is not host:port")
		}
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
		return "", bad("does not name a host")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", bad("has no valid port (1 to 65535)")
	}
	return net.JoinHostPort(host, strconv.FormatUint(n, 10)), nil
}

// validHostname reports whether h looks like a DNS name: labels of letters,
// digits, '-' and '_' separated by dots, an optional final dot.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// checkListen checks a host:port to listen on; the host may be empty (all
// interfaces).
func checkListen(l string) error {
	bad := func(why string) error {
		return fmt.Errorf("%q %s; give host:port, e.g. %q (the default) or \":9466\" for every interface", l, why, DefaultListen)
	}
	host, port, err := net.SplitHostPort(l)
	if err != nil {
		return bad("is not host:port")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return bad("has no valid port (1 to 65535)")
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
			return bad("does not name a host")
		}
	}
	return nil
}

// checkRoot checks a target's root: an absolute, clean slash path, not "/".
func checkRoot(r string) error {
	switch {
	case r == "":
		return fmt.Errorf("is required; give the absolute directory the difusor's web server serves, e.g. \"/var/www/prep\"")
	case !utf8.ValidString(r) || strings.ContainsFunc(r, unicode.IsControl):
		return fmt.Errorf("%q contains control characters or invalid UTF-8; write a plain path", r)
	case !strings.HasPrefix(r, "/"):
		return fmt.Errorf("%q is not absolute; write the full remote path, e.g. %q", r, path.Clean("/"+r))
	case r == "/":
		return fmt.Errorf("is \"/\"; give the directory the difusor's web server serves, e.g. \"/var/www/prep\"")
	case path.Clean(r) != r:
		return fmt.Errorf("%q is not in clean form; write %q", r, path.Clean(r))
	}
	return nil
}

// checkHostKey checks one public key in authorized_keys form.
func checkHostKey(k string) error {
	const how = "paste the type and base64 of the difusor's host key (its /etc/ssh/ssh_host_ed25519_key.pub), e.g. \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA...\""
	pk, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(k))
	switch {
	case err != nil:
		return fmt.Errorf("is not a public key (%v); %s", err, how)
	case len(options) > 0:
		return fmt.Errorf("starts with %q, which is not a key type (a known_hosts line starts with the host name); %s", strings.Join(options, ","), how)
	case len(bytes.TrimSpace(rest)) > 0:
		return fmt.Errorf("holds more than one key; give exactly one, or use known_hosts")
	}
	if _, ok := pk.(*ssh.Certificate); ok {
		return fmt.Errorf("is a certificate; give the host's plain public key; %s", how)
	}
	return nil
}

// fmtDur formats d as the config writes it: "10m", not "10m0s".
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// checkSiteURL checks a difusor's public base URL: absolute http or https,
// a host, no credentials, query or fragment.
func checkSiteURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL: %v", raw, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: use an http:// or https:// address, e.g. \"https://prep.diario.example/\"", raw)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%q names no host", raw)
	case u.User != nil:
		return fmt.Errorf("%q carries credentials; the public site's address must not", raw)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return fmt.Errorf("%q has a query or fragment; give the base address at which the difusor serves its root", raw)
	case strings.ContainsAny(raw, " \t\r\n"):
		return fmt.Errorf("%q contains spaces", raw)
	}
	return nil
}

// validateCheck checks the thresholds of "prepcast check".
func (c *Config) validateCheck(e *collector) {
	if c.Check.MinFreeDisk < 0 {
		e.add("check.min_free_disk", "is negative; %s", sizeExamples)
	}
	if c.Check.MinUploadRate < 0 {
		e.add("check.min_upload_rate", "is negative; %s", rateExamples)
	}
	if d := c.Check.UploadTest; d < time.Second || d > 5*time.Minute {
		e.add("check.upload_test", "%s is out of range; measure the upload for 1s to 5m (default %s): long enough to pass the ramp-up, short enough not to load the difusor", fmtDur(d), fmtDur(DefaultUploadTest))
	}
}

// publicText reports text shown to the public that is too long or holds
// control characters or invalid UTF-8.
func publicText(e *collector, field, s string, maxRunes int, what string) {
	switch {
	case s == "":
	case !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl):
		e.add(field, "contains control characters or invalid UTF-8; give %s", what)
	case utf8.RuneCountInString(s) > maxRunes:
		e.add(field, "is %d characters long; keep it to %d: %s", utf8.RuneCountInString(s), maxRunes, what)
	}
}
