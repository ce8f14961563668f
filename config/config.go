// Package config reads and checks prepcast's YAML config file.
//
// [Load] reads a file, applies defaults, resolves relative paths against the
// file's directory, checks every field and checks that the files it names
// exist. Every problem is a [*FieldError] naming the field as written in
// YAML (such as "targets[2].known_hosts"), what is wrong and what to do;
// all problems are returned together, so that an operator can fix the whole
// file in one go. Unknown fields are errors. prepcast.example.yaml at the
// root of the repository documents every field.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // cut ids and schedule times need the zone on any machine
)

// Defaults for fields that the config file may leave out.
const (
	DefaultZone            = "America/Mexico_City"
	DefaultPointer         = "json/main.json"
	DefaultEvery           = 10 * time.Minute
	DefaultRetentionCuts   = 3
	DefaultRetentionWindow = 30 * time.Minute
	DefaultVerifyPeriod    = 24 * time.Hour
	DefaultVerifyTime      = 30 * time.Second
	DefaultTargetsInFlight = 32
	DefaultFilesInFlight   = 64
	DefaultMaxLag          = 15 * time.Minute
	DefaultDialTimeout     = 10 * time.Second
	DefaultOperation       = 30 * time.Second
	DefaultKeepalive       = 10 * time.Second
	DefaultCycle           = 10 * time.Minute
	DefaultRetryAttempts   = 5
	DefaultRetryBase       = time.Second
	DefaultRetryMax        = 30 * time.Second
	DefaultListen          = "127.0.0.1:9466"
	DefaultLogLevel        = "info"
	DefaultLogName         = "prepcast.log" // in state_dir
	DefaultPort            = "22"
	DefaultMinFreeDisk     = 20_000_000_000 // 20 GB, the call's minimum
	DefaultMinUploadRate   = 40_000_000     // 40 MB/s over SFTP/SSH, the call's minimum
	DefaultUploadTest      = 15 * time.Second
)

// MinEvery is the shortest schedule.every accepted.
const MinEvery = time.Minute

// Target modes.
const (
	ModeSFTP = "sftp" // files are uploaded with SFTP
	ModeExec = "exec" // packages are streamed to "prepcast apply" over an SSH command
)

// Config is a checked config. Paths are absolute and clean; defaults are
// filled in. A Config returned by [Parse] or [Load] passes [Config.Validate].
type Config struct {
	Path       string         // the file it was loaded from (absolute); empty from Parse
	Source     string         // the results tree, a directory
	StateDir   string         // cut store, packages, state database, logs; created by prepcast if missing (its parent must exist)
	SigningKey string         // ed25519 private key written by "prepcast keygen"
	Zone       *time.Location // the zone of cut ids and schedule times
	ZoneName   string         // Zone's IANA name, default "America/Mexico_City"
	Pointer    []string       // files that switch the site to a cut, written last; default ["json/main.json"]
	Schedule   Schedule
	Retention  Retention
	Verify     Verify
	Limits     Limits
	MaxLag     time.Duration // lag above which status reports a target as behind; default 15m
	Timeouts   Timeouts
	Retry      Retry
	Listen     string // host:port for /metrics and /status in daemon mode; default "127.0.0.1:9466"
	Log        Log
	Report     Report
	Targets    []Target
	Check      Check
}

// Check holds the thresholds of "prepcast check": the call for difusores'
// minimums, as defaults.
type Check struct {
	MinFreeDisk   int64         // bytes free in a target's root; default 20 GB
	MinUploadRate int64         // sustained upload rate in bytes per second; default 40 MB/s
	UploadTest    time.Duration // how long the upload rate is measured; default 15s
	// PublicationEnd is when the publication period ends: an HTTPS
	// certificate must stay valid until then. Default schedule.hold_until,
	// else 15 June 23:59 of the year of schedule.start (or end); zero when
	// the schedule sets neither (the check then uses 15 June of the current
	// year).
	PublicationEnd time.Time
}

// Report is the public status page the daemon writes each cycle.
type Report struct {
	Out string // directory for index.html and status.json; empty: no page
}

// Schedule says when the daemon ("prepcast run") cuts and pushes.
type Schedule struct {
	Every time.Duration // interval between cycles, at least 1m; default 10m
	// Start, End and HoldUntil are optional (zero when not set), in Zone.
	// When set, Start < End <= HoldUntil. Cuts are made from Start to End;
	// until HoldUntil the daemon keeps targets on the last cut.
	Start, End, HoldUntil time.Time
}

// Retention bounds what is kept locally and on targets.
type Retention struct {
	Cuts   int           // cuts kept in the local store beyond those a target still needs; at least 1, default 3
	Window time.Duration // a file that left the manifest is deleted from targets only after this long; default 30m
}

// Verify configures the rotating verification: every push reads back and
// hashes a slice of the files each difusor acknowledges, so that a file
// altered on a difusor (even at the same size) is found and sent again.
type Verify struct {
	// Period is the time within which every file of the cut is re-read, at
	// one push per schedule.every; default 24h; 0 turns the rotation off.
	Period time.Duration
	// BytesPerPush and FilesPerPush, when set (non-zero), replace what
	// Period needs: each push reads back files until the next would take
	// it over BytesPerPush bytes or it has read FilesPerPush files,
	// whichever comes first (at least one file).
	BytesPerPush int64
	FilesPerPush int
	// TimePerPush bounds how long a push reads back; what it did not reach
	// is read first by the next push. Default 30s; 0 means no bound.
	TimePerPush time.Duration
}

// Limits bound bandwidth and concurrency. Rates are in bytes per second; 0
// means unlimited.
type Limits struct {
	Uplink          int64 // all targets together
	PerTarget       int64 // each target, unless the target sets its own Limit
	TargetsInFlight int   // targets pushed concurrently; default 32
	FilesInFlight   int   // files in flight per target; default 64
	// WholeFiles sends every changed file whole in file mode, never as
	// ranges copied from the file the difusor serves (copy-data).
	WholeFiles bool
}

// Timeouts bound network operations.
type Timeouts struct {
	Dial      time.Duration // TCP connect; default 10s
	Operation time.Duration // any single SFTP request, and the SSH handshake; default 30s
	Keepalive time.Duration // SSH keepalive interval; a peer silent for 3 intervals is dead; default 10s
	Cycle     time.Duration // per-target deadline for one push; default 10m
}

// Retry is the backoff policy for retryable errors.
type Retry struct {
	Attempts int           // tries per operation, including the first; default 5
	Base     time.Duration // first backoff, doubled each retry; default 1s
	Max      time.Duration // longest backoff; default 30s
}

// Log configures the log file.
type Log struct {
	File  string // default <state_dir>/prepcast.log
	Level string // debug, info, warn or error; default info
}

// Target is one difusor.
type Target struct {
	Name          string // unique, [a-z0-9][a-z0-9._-]{0,62}
	Address       string // host:port; the port defaults to 22
	User          string
	IdentityFile  string // private key file; empty means ssh-agent (Agent is true)
	Agent         bool   // authenticate with the keys of the ssh-agent at $SSH_AUTH_SOCK
	PassphraseEnv string // optional environment variable holding IdentityFile's passphrase
	KnownHosts    string // known_hosts file; exactly one of KnownHosts and HostKey is set
	HostKey       string // the host's public key in authorized_keys form, "ssh-ed25519 AAAA..."
	Root          string // absolute remote directory served by the difusor's web server
	Limit         int64  // bytes per second for this target, 0 = unlimited; defaults to Limits.PerTarget
	Mode          string // ModeSFTP or ModeExec
	// ApplyCommand is the command line that runs "prepcast apply" on the
	// difusor in mode exec; it defaults to DefaultApplyCommand(Root).
	ApplyCommand string
	// URL is the public base URL at which the difusor serves Root, e.g.
	// "https://prep.diario.example/"; empty when not configured. It always
	// ends in "/".
	URL string
	// FileMode and DirMode are the permissions prepcast gives the files and
	// directories it writes on the difusor, so that its web server (another
	// user) can read them whatever the SFTP server's umask.
	FileMode fs.FileMode
	DirMode  fs.FileMode
	// AllowNonAtomicReplace lets prepcast publish to an SFTP server without
	// posix-rename@openssh.com: new files still appear whole under their
	// final name, but a replaced file is removed and then renamed, so a
	// reader may find it missing for about one round trip. Without it such
	// a server is refused.
	AllowNonAtomicReplace bool
	// FsyncSessions is how many extra SSH sessions flush uploaded files to
	// the difusor's disk (default DefaultFsyncSessions); 0 flushes on the
	// main session. A server that refuses extra sessions (MaxSessions 1)
	// gets the main session whatever this says.
	FsyncSessions int
	// DisplayName, Logo and Contact describe the difusor in the public list
	// of official difusores ("prepcast list"): the name shown (default
	// Name), a PNG file linking to URL, and how to reach its
	// administrators. All optional.
	DisplayName string
	Logo        string
	Contact     string
	Disabled    bool // configured but skipped
}

// Default permissions of what prepcast writes on a difusor: readable by
// everyone (the web server), writable by the SFTP account only.
const (
	DefaultFileMode fs.FileMode = 0o644
	DefaultDirMode  fs.FileMode = 0o755
)

// DefaultFsyncSessions is a target's fsync_sessions when unset, and
// MaxFsyncSessions the most it may ask for.
const (
	DefaultFsyncSessions = 2
	MaxFsyncSessions     = 16
)

// DefaultApplyCommand is the apply command of a mode exec target that sets
// none: "prepcast apply --root ROOT", with ROOT quoted for the shell.
func DefaultApplyCommand(root string) string {
	return "prepcast apply --root " + shellQuote(root)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=:,@", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Load reads the config file at path, checks it with [Parse] and then checks
// the files it names with [Config.CheckFiles]. Relative paths in the file are
// resolved against the file's directory. A config that cannot be used is
// reported as an [*Error] that lists every problem.
func Load(path string) (*Config, error) {
	c, err := Read(path)
	if err != nil {
		return nil, err
	}
	if err := c.CheckFiles(); err != nil {
		return nil, &Error{Path: c.Path, Err: err}
	}
	return c, nil
}

// Read is [Load] without [Config.CheckFiles]: it reads and checks the file but
// does not look at the files the config names.
func Read(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read config: %w; pass --config FILE or create it from prepcast.example.yaml", err)
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data, filepath.Dir(abs))
	if err != nil {
		return nil, &Error{Path: abs, Err: err}
	}
	c.Path = abs
	return c, nil
}

// Parse parses and checks a config from data, resolving relative paths
// against baseDir (made absolute against the working directory if it is
// not). It checks syntax and meaning but not the filesystem; see
// [Config.CheckFiles]. A syntax error names its line; otherwise the error is
// the errors.Join of a [*FieldError] per problem.
func Parse(data []byte, baseDir string) (*Config, error) {
	base, err := filepath.Abs(baseDir)
	if err != nil {
		return nil, fmt.Errorf("resolve config directory %q: %w", baseDir, err)
	}
	var e collector
	raw, err := decodeRaw(data, &e)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, e.err()
	}
	cv := converter{base: base, e: &e}
	c := cv.config(raw)
	c.validate(&e)
	if err := e.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Target returns the target called name.
func (c *Config) Target(name string) (*Target, bool) {
	for i := range c.Targets {
		if c.Targets[i].Name == name {
			return &c.Targets[i], true
		}
	}
	return nil, false
}

// EnabledTargets returns the targets that are not disabled, in config order.
func (c *Config) EnabledTargets() []*Target {
	var ts []*Target
	for i := range c.Targets {
		if !c.Targets[i].Disabled {
			ts = append(ts, &c.Targets[i])
		}
	}
	return ts
}

// RequireTargets returns a [*FieldError] for "targets" unless at least one
// target is configured and enabled. Commands that push call it; "cut" does
// not need targets.
func (c *Config) RequireTargets() error {
	switch {
	case len(c.Targets) == 0:
		return &FieldError{Field: "targets", Msg: "no targets configured; add at least one difusor under targets: (see prepcast.example.yaml)"}
	case len(c.EnabledTargets()) == 0:
		return &FieldError{Field: "targets", Msg: fmt.Sprintf("all %d targets are disabled; set disabled: false on at least one", len(c.Targets))}
	}
	return nil
}

// converter turns a rawConfig into a Config, reporting values that cannot be
// read. Values that can be read but make no sense are left to validate.
type converter struct {
	base string
	e    *collector
}

func (cv *converter) config(r *rawConfig) *Config {
	c := &Config{
		Source:     cv.path("source", r.Source),
		StateDir:   cv.path("state_dir", r.StateDir),
		SigningKey: cv.path("signing_key", r.SigningKey),
		ZoneName:   DefaultZone,
		Pointer:    []string{DefaultPointer},
		MaxLag:     cv.duration("max_lag", r.MaxLag, DefaultMaxLag),
		Listen:     cv.str(r.Listen, DefaultListen),
		Report:     Report{Out: cv.path("report.out", r.Report.Out)},
	}
	c.Zone, c.ZoneName = cv.zone(r.Zone)

	if r.Pointer.ok {
		c.Pointer = make([]string, len(r.Pointer.items))
		for i, s := range r.Pointer.items {
			c.Pointer[i] = s.value
			if !s.set() {
				cv.e.add(fmt.Sprintf("pointer[%d]", i), "is empty; give a path in the results tree, e.g. %q", DefaultPointer)
				cv.e.hide("pointer") // the other items are checked once this one is fixed
			}
		}
	}

	c.Schedule = Schedule{
		Every:     cv.duration("schedule.every", r.Schedule.Every, DefaultEvery),
		Start:     cv.time("schedule.start", r.Schedule.Start, c.Zone),
		End:       cv.time("schedule.end", r.Schedule.End, c.Zone),
		HoldUntil: cv.time("schedule.hold_until", r.Schedule.HoldUntil, c.Zone),
	}
	c.Retention = Retention{
		Cuts:   cv.int("retention.cuts", r.Retention.Cuts, DefaultRetentionCuts),
		Window: cv.duration("retention.window", r.Retention.Window, DefaultRetentionWindow),
	}
	c.Verify = Verify{
		Period:       cv.duration("verify.period", r.Verify.Period, DefaultVerifyPeriod),
		BytesPerPush: cv.size("verify.bytes_per_push", r.Verify.BytesPerPush, 0),
		FilesPerPush: cv.int("verify.files_per_push", r.Verify.FilesPerPush, 0),
		TimePerPush:  cv.duration("verify.time_per_push", r.Verify.TimePerPush, DefaultVerifyTime),
	}
	c.Limits = Limits{
		Uplink:          cv.rate("limits.uplink", r.Limits.Uplink, 0),
		PerTarget:       cv.rate("limits.per_target", r.Limits.PerTarget, 0),
		TargetsInFlight: cv.int("limits.targets_in_flight", r.Limits.TargetsInFlight, DefaultTargetsInFlight),
		FilesInFlight:   cv.int("limits.files_in_flight", r.Limits.FilesInFlight, DefaultFilesInFlight),
		WholeFiles:      cv.bool("limits.whole_files", r.Limits.WholeFiles),
	}
	c.Timeouts = Timeouts{
		Dial:      cv.duration("timeouts.dial", r.Timeouts.Dial, DefaultDialTimeout),
		Operation: cv.duration("timeouts.operation", r.Timeouts.Operation, DefaultOperation),
		Keepalive: cv.duration("timeouts.keepalive", r.Timeouts.Keepalive, DefaultKeepalive),
		Cycle:     cv.duration("timeouts.cycle", r.Timeouts.Cycle, DefaultCycle),
	}
	c.Retry = Retry{
		Attempts: cv.int("retry.attempts", r.Retry.Attempts, DefaultRetryAttempts),
		Base:     cv.duration("retry.base", r.Retry.Base, DefaultRetryBase),
		Max:      cv.duration("retry.max", r.Retry.Max, DefaultRetryMax),
	}
	c.Log = Log{
		File:  cv.path("log.file", r.Log.File),
		Level: cv.str(r.Log.Level, DefaultLogLevel),
	}
	if c.Log.File == "" && c.StateDir != "" {
		c.Log.File = filepath.Join(c.StateDir, DefaultLogName)
	}

	for i, rt := range r.Targets {
		f := func(name string) string { return fmt.Sprintf("targets[%d].%s", i, name) }
		t := Target{
			Name:                  rt.Name.value,
			Address:               rt.Address.value,
			User:                  rt.User.value,
			IdentityFile:          cv.path(f("identity_file"), rt.IdentityFile),
			PassphraseEnv:         rt.PassphraseEnv.value,
			KnownHosts:            cv.path(f("known_hosts"), rt.KnownHosts),
			HostKey:               strings.TrimSpace(rt.HostKey.value),
			Root:                  rt.Root.value,
			Limit:                 cv.rate(f("limit"), rt.Limit, c.Limits.PerTarget),
			Mode:                  cv.str(rt.Mode, ModeSFTP),
			ApplyCommand:          strings.TrimSpace(rt.ApplyCommand.value),
			URL:                   strings.TrimSpace(rt.URL.value),
			FileMode:              cv.mode(f("file_mode"), rt.FileMode, DefaultFileMode),
			DirMode:               cv.mode(f("dir_mode"), rt.DirMode, DefaultDirMode),
			FsyncSessions:         cv.int(f("fsync_sessions"), rt.FsyncSessions, DefaultFsyncSessions),
			Disabled:              cv.bool(f("disabled"), rt.Disabled),
			AllowNonAtomicReplace: cv.bool(f("allow_non_atomic_replace"), rt.AllowNonAtomicReplace),
			DisplayName:           strings.TrimSpace(rt.DisplayName.value),
			Logo:                  cv.path(f("logo"), rt.Logo),
			Contact:               strings.TrimSpace(rt.Contact.value),
		}
		t.Agent = t.IdentityFile == ""
		if t.Mode == ModeExec && t.ApplyCommand == "" {
			t.ApplyCommand = DefaultApplyCommand(t.Root)
		}
		if t.URL != "" && !strings.HasSuffix(t.URL, "/") {
			t.URL += "/"
		}
		if rt.Address.set() {
			if a, err := normalizeAddress(t.Address); err != nil {
				cv.e.add(f("address"), "%v", err)
			} else {
				t.Address = a
			}
		}
		c.Targets = append(c.Targets, t)
	}

	c.Check = Check{
		MinFreeDisk:    cv.size("check.min_free_disk", r.Check.MinFreeDisk, DefaultMinFreeDisk),
		MinUploadRate:  cv.rate("check.min_upload_rate", r.Check.MinUploadRate, DefaultMinUploadRate),
		UploadTest:     cv.duration("check.upload_test", r.Check.UploadTest, DefaultUploadTest),
		PublicationEnd: cv.time("check.publication_end", r.Check.PublicationEnd, c.Zone),
	}
	if c.Check.PublicationEnd.IsZero() && !r.Check.PublicationEnd.set() && c.Zone != nil {
		c.Check.PublicationEnd = DefaultPublicationEnd(c.Schedule, c.Zone)
	}
	return c
}

// DefaultPublicationEnd is check.publication_end when the config sets none:
// s.HoldUntil, else 15 June 23:59 of the year of s.Start (or s.End) in loc,
// else zero.
func DefaultPublicationEnd(s Schedule, loc *time.Location) time.Time {
	switch {
	case !s.HoldUntil.IsZero():
		return s.HoldUntil
	case !s.Start.IsZero():
		return time.Date(s.Start.In(loc).Year(), time.June, 15, 23, 59, 0, 0, loc)
	case !s.End.IsZero():
		return time.Date(s.End.In(loc).Year(), time.June, 15, 23, 59, 0, 0, loc)
	}
	return time.Time{}
}

func (cv *converter) size(field string, s scalar, def int64) int64 {
	if !s.set() {
		return def
	}
	n, err := ParseSize(s.value)
	if err != nil {
		cv.e.add(field, "%v", err)
		return def
	}
	return n
}

func (cv *converter) str(s scalar, def string) string {
	if !s.set() {
		return def
	}
	return s.value
}

// path resolves a path against the config file's directory.
func (cv *converter) path(field string, s scalar) string {
	if !s.set() {
		return ""
	}
	p := s.value
	switch {
	case strings.HasPrefix(p, "~"):
		cv.e.add(field, "%q: ~ is not expanded; write the full path, e.g. /home/prep/%s", p, strings.TrimLeft(strings.TrimPrefix(p, "~"), "/"))
		return ""
	case strings.ContainsRune(p, 0):
		cv.e.add(field, "%q contains a NUL byte; write a plain path", p)
		return ""
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(cv.base, p)
	}
	return filepath.Clean(p)
}

func (cv *converter) duration(field string, s scalar, def time.Duration) time.Duration {
	if !s.set() {
		return def
	}
	d, err := parseDuration(s.value)
	if err != nil {
		cv.e.add(field, "%v (default %s)", err, fmtDur(def))
		return def
	}
	return d
}

func (cv *converter) int(field string, s scalar, def int) int {
	if !s.set() {
		return def
	}
	n, err := strconv.Atoi(s.value)
	if err != nil {
		cv.e.add(field, "%q is not a whole number; write e.g. %d (the default)", s.value, def)
		return def
	}
	return n
}

func (cv *converter) rate(field string, s scalar, def int64) int64 {
	if !s.set() {
		return def
	}
	n, err := ParseRate(s.value)
	if err != nil {
		cv.e.add(field, "%v", err)
		return def
	}
	return n
}

func (cv *converter) bool(field string, s scalar) bool {
	if !s.set() {
		return false
	}
	switch strings.ToLower(s.value) {
	case "true":
		return true
	case "false":
		return false
	}
	cv.e.add(field, "%q is not true or false", s.value)
	return false
}

func (cv *converter) zone(s scalar) (*time.Location, string) {
	name := DefaultZone
	if s.set() {
		name = s.value
	}
	loc, err := loadZone(name)
	if err != nil {
		cv.e.add("zone", "%v", err)
		loc, _ = time.LoadLocation(DefaultZone)
		return loc, DefaultZone
	}
	return loc, name
}

func (cv *converter) time(field string, s scalar, loc *time.Location) time.Time {
	if !s.set() || loc == nil {
		return time.Time{}
	}
	t, err := parseTime(s.value, loc)
	if err != nil {
		cv.e.add(field, "%v", err)
		return time.Time{}
	}
	return t
}

// loadZone loads an IANA zone, refusing "Local" (which differs between
// machines) and "" (which Go reads as UTC).
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("%q is not a fixed zone; use an IANA name such as %q", name, DefaultZone)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q; use an IANA name such as %q", name, DefaultZone)
	}
	return loc, nil
}

// mode converts an octal permission such as "0644" (or "644"); def when not
// set.
func (cv *converter) mode(field string, s scalar, def fs.FileMode) fs.FileMode {
	if !s.set() {
		return def
	}
	v := strings.TrimPrefix(strings.TrimPrefix(s.value, "0o"), "0")
	n, err := strconv.ParseUint(v, 8, 32)
	if v == "" || err != nil || n > 0o777 {
		cv.e.add(field, "%q is not a permission; write it in octal, e.g. \"0644\" for files, \"0755\" for directories", s.value)
		return def
	}
	return fs.FileMode(n)
}
