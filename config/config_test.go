package config_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/prepcast/prepcast/config"
	"golang.org/x/crypto/ssh"
)

// kv is a YAML mapping as written: key to raw YAML value text. A value of
// del removes the key.
type kv map[string]string

const del = "\x00delete"

var (
	baseTop = kv{
		"source":      "/srv/prep/publicacion",
		"state_dir":   "/var/lib/prepcast",
		"signing_key": "/etc/prepcast/manifest.key",
	}
	baseTarget = kv{
		"name":        "diario",
		"address":     "sftp.diario.example",
		"user":        "prep",
		"known_hosts": "/etc/prepcast/known_hosts",
		"root":        "/var/www/prep",
	}
)

// with returns base changed by over.
func with(base, over kv) kv {
	m := kv{}
	for k, v := range base {
		m[k] = v
	}
	for k, v := range over {
		if v == del {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

// render writes a config with top-level fields top and the given targets.
func render(top kv, targets ...kv) []byte {
	var b strings.Builder
	for _, k := range sortedKeys(top) {
		fmt.Fprintf(&b, "%s: %s\n", k, top[k])
	}
	if len(targets) > 0 {
		b.WriteString("targets:\n")
	}
	for _, t := range targets {
		for i, k := range sortedKeys(t) {
			prefix := "    "
			if i == 0 {
				prefix = "  - "
			}
			fmt.Fprintf(&b, "%s%s: %s\n", prefix, k, t[k])
		}
	}
	return []byte(b.String())
}

func sortedKeys(m kv) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func hostKey(t testing.TB) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
}

func fields(err error) []string {
	var fs []string
	for _, fe := range config.FieldErrors(err) {
		fs = append(fs, fe.Field)
	}
	return fs
}

func TestParseValidMinimal(t *testing.T) {
	c, err := config.Parse(render(baseTop, baseTarget), "/etc/prepcast")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after Parse: %v", err)
	}
	if err := c.RequireTargets(); err != nil {
		t.Errorf("RequireTargets: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c, err := config.Parse(render(baseTop, baseTarget), "/etc/prepcast")
	if err != nil {
		t.Fatal(err)
	}
	mx, err := time.LoadLocation("America/Mexico_City")
	if err != nil {
		t.Fatal(err)
	}
	want := &config.Config{
		Source:     "/srv/prep/publicacion",
		StateDir:   "/var/lib/prepcast",
		SigningKey: "/etc/prepcast/manifest.key",
		Zone:       mx,
		ZoneName:   "America/Mexico_City",
		Pointer:    []string{"json/main.json"},
		Schedule:   config.Schedule{Every: 10 * time.Minute},
		Retention:  config.Retention{Cuts: 3, Window: 30 * time.Minute},
		Verify:     config.Verify{Period: 24 * time.Hour, TimePerPush: 30 * time.Second},
		Limits:     config.Limits{Uplink: 0, PerTarget: 0, TargetsInFlight: 32, FilesInFlight: 64},
		MaxLag:     15 * time.Minute,
		Timeouts:   config.Timeouts{Dial: 10 * time.Second, Operation: 30 * time.Second, Keepalive: 10 * time.Second, Cycle: 10 * time.Minute},
		Retry:      config.Retry{Attempts: 5, Base: time.Second, Max: 30 * time.Second},
		Listen:     "127.0.0.1:9466",
		Log:        config.Log{File: "/var/lib/prepcast/prepcast.log", Level: "info"},
		Check:      config.Check{MinFreeDisk: 20e9, MinUploadRate: 40e6, UploadTest: 15 * time.Second},
		Targets: []config.Target{{
			Name:       "diario",
			Address:    "sftp.diario.example:22",
			User:       "prep",
			Agent:      true,
			KnownHosts: "/etc/prepcast/known_hosts",
			Root:       "/var/www/prep",
			Mode:       "sftp",
			FileMode:   0o644,
			DirMode:    0o755,

			FsyncSessions: config.DefaultFsyncSessions,
		}},
	}
	if c.Zone.String() != want.Zone.String() {
		t.Errorf("Zone = %v, want %v", c.Zone, want.Zone)
	}
	c.Zone, want.Zone = nil, nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

func TestEveryFieldSet(t *testing.T) {
	hk := hostKey(t)
	top := with(baseTop, kv{
		"zone":      "UTC",
		"pointer":   "[json/main.json, json/extra.json]",
		"schedule":  `{every: 5m, start: "2024-06-02 20:00", end: "2024-06-03T20:00:30", hold_until: "2024-06-16T23:59"}`,
		"retention": "{cuts: 7, window: 1h}",
		"limits":    "{uplink: 10Gbit/s, per_target: 40MiB/s, targets_in_flight: 100, files_in_flight: 64, whole_files: true}",
		"max_lag":   "25m",
		"timeouts":  "{dial: 3s, operation: 20s, keepalive: 5s, cycle: 8m}",
		"retry":     "{attempts: 9, base: 200ms, max: 1m}",
		"listen":    `"[::1]:9000"`,
		"log":       "{file: /var/log/prepcast.log, level: debug}",
	})
	t1 := with(baseTarget, kv{"identity_file": "/etc/prepcast/id", "passphrase_env": "PREP_PASS", "limit": "100Mbit", "mode": "exec", "apply_command": "/usr/local/bin/prepcast apply --root /var/www/prep", "disabled": "true",
		"url": "https://prep.diario.example", "file_mode": "0664", "dir_mode": "0775",
		"allow_non_atomic_replace": "true", "fsync_sessions": "0"})
	t2 := with(baseTarget, kv{"name": "tv", "address": `"[2001:db8::1]:2222"`, "known_hosts": del, "host_key": `"` + hk + `"`})
	c, err := config.Parse(render(top, t1, t2), "/etc/prepcast")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse("2006-01-02T15:04:05", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"zone", c.ZoneName, "UTC"},
		{"pointer", c.Pointer, []string{"json/main.json", "json/extra.json"}},
		{"every", c.Schedule.Every, 5 * time.Minute},
		{"start", c.Schedule.Start, utc("2024-06-02T20:00:00")},
		{"end", c.Schedule.End, utc("2024-06-03T20:00:30")},
		{"hold_until", c.Schedule.HoldUntil, utc("2024-06-16T23:59:00")},
		{"retention", c.Retention, config.Retention{Cuts: 7, Window: time.Hour}},
		{"limits", c.Limits, config.Limits{Uplink: 1_250_000_000, PerTarget: 40 << 20, TargetsInFlight: 100, FilesInFlight: 64, WholeFiles: true}},
		{"max_lag", c.MaxLag, 25 * time.Minute},
		{"timeouts", c.Timeouts, config.Timeouts{Dial: 3 * time.Second, Operation: 20 * time.Second, Keepalive: 5 * time.Second, Cycle: 8 * time.Minute}},
		{"retry", c.Retry, config.Retry{Attempts: 9, Base: 200 * time.Millisecond, Max: time.Minute}},
		{"listen", c.Listen, "[::1]:9000"},
		{"log", c.Log, config.Log{File: "/var/log/prepcast.log", Level: "debug"}},
		{"target 0", c.Targets[0], config.Target{
			Name: "diario", Address: "sftp.diario.example:22", User: "prep",
			IdentityFile: "/etc/prepcast/id", PassphraseEnv: "PREP_PASS", KnownHosts: "/etc/prepcast/known_hosts",
			Root: "/var/www/prep", Limit: 12_500_000, Mode: "exec", ApplyCommand: "/usr/local/bin/prepcast apply --root /var/www/prep", Disabled: true,
			URL: "https://prep.diario.example/", FileMode: 0o664, DirMode: 0o775,
			AllowNonAtomicReplace: true, FsyncSessions: 0,
		}},
		{"target 1", c.Targets[1], config.Target{
			Name: "tv", Address: "[2001:db8::1]:2222", User: "prep", Agent: true, HostKey: hk,
			Root: "/var/www/prep", Limit: 40 << 20, Mode: "sftp", FileMode: 0o644, DirMode: 0o755,
			FsyncSessions: config.DefaultFsyncSessions,
		}},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %+v, want %+v", ck.name, ck.got, ck.want)
		}
	}
	if got := c.EnabledTargets(); len(got) != 1 || got[0].Name != "tv" {
		t.Errorf("EnabledTargets = %v, want only tv", got)
	}
	if tg, ok := c.Target("tv"); !ok || tg != &c.Targets[1] {
		t.Errorf("Target(tv) = %v, %v; want &Targets[1]", tg, ok)
	}
	if _, ok := c.Target("nope"); ok {
		t.Error("Target(nope) found")
	}
}

func TestScheduleTimesInZone(t *testing.T) {
	// 20:00 in Mexico City (UTC-6, no DST since 2022) is 02:00 UTC the next day.
	top := with(baseTop, kv{"schedule": `{start: "2024-06-02T20:00", end: "2024-06-03 20:00:00"}`})
	c, err := config.Parse(render(top, baseTarget), "/")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2024, 6, 3, 2, 0, 0, 0, time.UTC); !c.Schedule.Start.Equal(want) {
		t.Errorf("start = %v, want %v", c.Schedule.Start.UTC(), want)
	}
	if c.Schedule.Start.Location().String() != "America/Mexico_City" {
		t.Errorf("start location = %v", c.Schedule.Start.Location())
	}
	if !c.Schedule.HoldUntil.IsZero() {
		t.Errorf("hold_until = %v, want zero (not set)", c.Schedule.HoldUntil)
	}
}

func TestRelativePaths(t *testing.T) {
	top := with(baseTop, kv{
		"source":      "results",
		"state_dir":   "../var/state",
		"signing_key": "./keys/manifest.key",
		"log":         "{file: logs/p.log}",
	})
	tg := with(baseTarget, kv{"identity_file": "keys/id", "known_hosts": "known_hosts"})
	c, err := config.Parse(render(top, tg), "/etc/prepcast")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ got, want string }{
		{c.Source, "/etc/prepcast/results"},
		{c.StateDir, "/etc/var/state"},
		{c.SigningKey, "/etc/prepcast/keys/manifest.key"},
		{c.Log.File, "/etc/prepcast/logs/p.log"},
		{c.Targets[0].IdentityFile, "/etc/prepcast/keys/id"},
		{c.Targets[0].KnownHosts, "/etc/prepcast/known_hosts"},
	} {
		if p.got != p.want {
			t.Errorf("path = %q, want %q", p.got, p.want)
		}
	}

	// A relative base directory is taken from the working directory.
	c, err = config.Parse(render(with(baseTop, kv{"source": "results"}), baseTarget), "conf")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Abs("conf/results")
	if c.Source != want {
		t.Errorf("source with relative base = %q, want %q", c.Source, want)
	}
}

func TestPointerForms(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want []string
	}{
		{"json/main.json", []string{"json/main.json"}},
		{"index.json", []string{"index.json"}},
		{"[a.json, json/b.json]", []string{"a.json", "json/b.json"}},
		{"\n  - a.json\n  - b.json", []string{"a.json", "b.json"}},
		{"~", []string{"json/main.json"}},
	} {
		c, err := config.Parse(render(with(baseTop, kv{"pointer": tc.yaml}), baseTarget), "/")
		if err != nil {
			t.Errorf("pointer %q: %v", tc.yaml, err)
			continue
		}
		if !slices.Equal(c.Pointer, tc.want) {
			t.Errorf("pointer %q = %q, want %q", tc.yaml, c.Pointer, tc.want)
		}
	}
}

func TestAddressNormalized(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"host", "host:22"},
		{"sftp.diario.example:2222", "sftp.diario.example:2222"},
		{"10.0.0.7", "10.0.0.7:22"},
		{"10.0.0.7:022", "10.0.0.7:22"},
		{`"[::1]:22"`, "[::1]:22"},
		{`"[::1]"`, "[::1]:22"},
		{`"::1"`, "[::1]:22"},
		{`"2001:db8::10"`, "[2001:db8::10]:22"},
		{"difusor_1.example.", "difusor_1.example.:22"},
	} {
		c, err := config.Parse(render(baseTop, with(baseTarget, kv{"address": tc.in})), "/")
		if err != nil {
			t.Errorf("address %s: %v", tc.in, err)
			continue
		}
		if got := c.Targets[0].Address; got != tc.want {
			t.Errorf("address %s = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestZeroTargets(t *testing.T) {
	c, err := config.Parse(render(baseTop), "/")
	if err != nil {
		t.Fatalf("zero targets must parse (cut needs none): %v", err)
	}
	err = c.RequireTargets()
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "targets" || !strings.Contains(fe.Msg, "no targets") {
		t.Errorf("RequireTargets = %v, want a targets FieldError saying no targets", err)
	}

	c, err = config.Parse(render(baseTop, with(baseTarget, kv{"disabled": "true"})), "/")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RequireTargets(); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("RequireTargets with all disabled = %v, want an error saying they are disabled", err)
	}
}

func TestMergeKeys(t *testing.T) {
	doc := string(render(baseTop)) + `targets:
  - &common
    name: uno
    address: uno.example
    user: prep
    known_hosts: /etc/prepcast/known_hosts
    root: /var/www/prep
  - <<: *common
    name: dos
    address: dos.example
`
	c, err := config.Parse([]byte(doc), "/")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Targets[1]; got.Name != "dos" || got.Address != "dos.example:22" || got.User != "prep" || got.Root != "/var/www/prep" {
		t.Errorf("merged target = %+v", got)
	}
}

// TestFieldErrors changes one thing in a valid config and checks that
// exactly the expected fields are reported, each with a message that says
// what to do.
func TestFieldErrors(t *testing.T) {
	hk := hostKey(t)
	tests := []struct {
		name    string
		top     kv   // changes to baseTop
		target  kv   // changes to baseTarget
		extra   []kv // more targets, after the first
		want    []string
		wantMsg string // in the first error's message
	}{
		// Paths and their relations.
		{name: "no source", top: kv{"source": del}, want: []string{"source"}, wantMsg: "is required"},
		{name: "no state_dir", top: kv{"state_dir": del}, want: []string{"state_dir"}, wantMsg: "is required"},
		{name: "no signing_key", top: kv{"signing_key": del}, want: []string{"signing_key"}, wantMsg: "prepcast keygen"},
		{name: "tilde", top: kv{"source": "~/prep"}, want: []string{"source"}, wantMsg: "~ is not expanded"},
		{name: "source is state_dir", top: kv{"state_dir": "/srv/prep/publicacion"}, want: []string{"state_dir"}, wantMsg: "same directory"},
		{name: "state_dir inside source", top: kv{"state_dir": "/srv/prep/publicacion/.prepcast"}, want: []string{"state_dir"}, wantMsg: "inside source"},
		{name: "source inside state_dir", top: kv{"source": "/var/lib/prepcast/results"}, want: []string{"source"}, wantMsg: "inside state_dir"},
		{name: "source is root", top: kv{"source": "/"}, want: []string{"source"}, wantMsg: "/srv/prep/publicacion"},
		{name: "signing_key inside source", top: kv{"signing_key": "/srv/prep/publicacion/k"}, want: []string{"signing_key"}, wantMsg: "published"},
		{name: "log inside source", top: kv{"log": "{file: /srv/prep/publicacion/p.log}"}, want: []string{"log.file"}, wantMsg: "published"},
		{name: "identity inside source", target: kv{"identity_file": "/srv/prep/publicacion/id"}, want: []string{"targets[0].identity_file"}, wantMsg: "published"},
		{name: "known_hosts inside source", target: kv{"known_hosts": "/srv/prep/publicacion/kh"}, want: []string{"targets[0].known_hosts"}, wantMsg: "published"},

		// Zone and pointer.
		{name: "bad zone", top: kv{"zone": "Mexico/Puebla"}, want: []string{"zone"}, wantMsg: `"America/Mexico_City"`},
		{name: "Local zone", top: kv{"zone": "Local"}, want: []string{"zone"}, wantMsg: "IANA"},
		{name: "pointer escapes", top: kv{"pointer": "../main.json"}, want: []string{"pointer"}, wantMsg: "relative to the results tree"},
		{name: "pointer absolute", top: kv{"pointer": "[json/main.json, /etc/passwd]"}, want: []string{"pointer[1]"}, wantMsg: "absolute"},
		{name: "pointer reserved", top: kv{"pointer": ".prepcast/ack.json"}, want: []string{"pointer"}, wantMsg: ".prepcast"},
		{name: "pointer duplicate", top: kv{"pointer": "[a.json, b.json, a.json]"}, want: []string{"pointer[2]"}, wantMsg: "already pointer[0]"},
		{name: "pointer empty list", top: kv{"pointer": "[]"}, want: []string{"pointer"}, wantMsg: "json/main.json"},
		{name: "pointer empty item", top: kv{"pointer": `[a.json, ""]`}, want: []string{"pointer[1]"}, wantMsg: "empty"},

		// Schedule.
		{name: "every short", top: kv{"schedule": "{every: 30s}"}, want: []string{"schedule.every"}, wantMsg: "at least 1m"},
		{name: "every zero", top: kv{"schedule": "{every: 0s}"}, want: []string{"schedule.every"}, wantMsg: "at least 1m"},
		{name: "every no unit", top: kv{"schedule": "{every: 10}"}, want: []string{"schedule.every"}, wantMsg: `"10m"`},
		{name: "start garbage", top: kv{"schedule": "{start: tonight}"}, want: []string{"schedule.start"}, wantMsg: "2024-06-02T20:00"},
		{name: "start with offset", top: kv{"schedule": `{start: "2024-06-02T20:00:00-06:00"}`}, want: []string{"schedule.start"}, wantMsg: "YYYY-MM-DDTHH:MM"},
		{name: "end before start", top: kv{"schedule": `{start: "2024-06-02T20:00", end: "2024-06-02T19:00"}`}, want: []string{"schedule.end"}, wantMsg: "not after schedule.start"},
		{name: "end equals start", top: kv{"schedule": `{start: "2024-06-02T20:00", end: "2024-06-02T20:00"}`}, want: []string{"schedule.end"}, wantMsg: "not after"},
		{name: "hold before end", top: kv{"schedule": `{start: "2024-06-02T20:00", end: "2024-06-03T20:00", hold_until: "2024-06-03T19:59"}`}, want: []string{"schedule.hold_until"}, wantMsg: "before schedule.end"},
		{name: "hold before start", top: kv{"schedule": `{start: "2024-06-02T20:00", hold_until: "2024-06-01T00:00"}`}, want: []string{"schedule.hold_until"}, wantMsg: "not after schedule.start"},

		// Retention, limits, durations.
		{name: "cuts zero", top: kv{"retention": "{cuts: 0}"}, want: []string{"retention.cuts"}, wantMsg: "at least 1"},
		{name: "cuts negative", top: kv{"retention": "{cuts: -2}"}, want: []string{"retention.cuts"}, wantMsg: "at least 1"},
		{name: "cuts not a number", top: kv{"retention": "{cuts: three}"}, want: []string{"retention.cuts"}, wantMsg: "whole number"},
		{name: "window zero", top: kv{"retention": "{window: 0s}"}, want: []string{"retention.window"}, wantMsg: "not positive"},
		{name: "uplink garbage", top: kv{"limits": "{uplink: fast}"}, want: []string{"limits.uplink"}, wantMsg: `"40MB/s"`},
		{name: "per_target no unit", top: kv{"limits": "{per_target: 40M}"}, want: []string{"limits.per_target"}, wantMsg: "no unit"},
		{name: "per_target tiny", top: kv{"limits": "{per_target: 40}"}, want: []string{"limits.per_target"}, wantMsg: "check the unit"},
		{name: "targets_in_flight zero", top: kv{"limits": "{targets_in_flight: 0}"}, want: []string{"limits.targets_in_flight"}, wantMsg: "at least 1"},
		{name: "files_in_flight fraction", top: kv{"limits": "{files_in_flight: 1.5}"}, want: []string{"limits.files_in_flight"}, wantMsg: "whole number"},
		{name: "max_lag negative", top: kv{"max_lag": "-15m"}, want: []string{"max_lag"}, wantMsg: "not positive"},
		{name: "dial zero", top: kv{"timeouts": "{dial: 0s}"}, want: []string{"timeouts.dial"}, wantMsg: `"10s"`},
		{name: "operation garbage", top: kv{"timeouts": "{operation: long}"}, want: []string{"timeouts.operation"}, wantMsg: "not a duration"},
		{name: "keepalive zero", top: kv{"timeouts": "{keepalive: 0}"}, want: []string{"timeouts.keepalive"}, wantMsg: "not positive"},
		{name: "cycle negative", top: kv{"timeouts": "{cycle: -1s}"}, want: []string{"timeouts.cycle"}, wantMsg: "not positive"},
		{name: "attempts zero", top: kv{"retry": "{attempts: 0}"}, want: []string{"retry.attempts"}, wantMsg: "at least 1"},
		{name: "base zero", top: kv{"retry": "{base: 0s}"}, want: []string{"retry.base"}, wantMsg: "not positive"},
		{name: "max below base", top: kv{"retry": "{base: 10s, max: 5s}"}, want: []string{"retry.max"}, wantMsg: "at least base"},
		{name: "listen no port", top: kv{"listen": "localhost"}, want: []string{"listen"}, wantMsg: "host:port"},
		{name: "listen port zero", top: kv{"listen": `":0"`}, want: []string{"listen"}, wantMsg: "1 to 65535"},
		{name: "listen port big", top: kv{"listen": "127.0.0.1:70000"}, want: []string{"listen"}, wantMsg: "1 to 65535"},
		{name: "log level", top: kv{"log": "{level: verbose}"}, want: []string{"log.level"}, wantMsg: "debug, info, warn, error"},

		// Targets.
		{name: "no name", target: kv{"name": del}, want: []string{"targets[0].name"}, wantMsg: "is required"},
		{name: "upper-case name", target: kv{"name": "Diario"}, want: []string{"targets[0].name"}, wantMsg: "lower-case"},
		{name: "name starts with dash", target: kv{"name": "-diario"}, want: []string{"targets[0].name"}, wantMsg: "starting with"},
		{name: "name too long", target: kv{"name": strings.Repeat("a", 64)}, want: []string{"targets[0].name"}, wantMsg: "63"},
		{name: "duplicate name", extra: []kv{with(baseTarget, kv{"root": "/var/www/other"})}, want: []string{"targets[1].name"}, wantMsg: "already the name of targets[0]"},
		{name: "no address", target: kv{"address": del}, want: []string{"targets[0].address"}, wantMsg: "is required"},
		{name: "user in address", target: kv{"address": "prep@sftp.example"}, want: []string{"targets[0].address"}, wantMsg: "put the user name in user"},
		{name: "url address", target: kv{"address": "sftp://sftp.example"}, want: []string{"targets[0].address"}, wantMsg: "scheme"},
		{name: "port zero", target: kv{"address": "sftp.example:0"}, want: []string{"targets[0].address"}, wantMsg: "1 to 65535"},
		{name: "port name", target: kv{"address": "sftp.example:ssh"}, want: []string{"targets[0].address"}, wantMsg: "port"},
		{name: "empty port", target: kv{"address": `"sftp.example:"`}, want: []string{"targets[0].address"}, wantMsg: "port"},
		{name: "bad host", target: kv{"address": `"sftp example"`}, want: []string{"targets[0].address"}, wantMsg: "does not name a host"},
		{name: "open bracket", target: kv{"address": `"[::1"`}, want: []string{"targets[0].address"}, wantMsg: "host:port"},
		{name: "no user", target: kv{"user": del}, want: []string{"targets[0].user"}, wantMsg: "is required"},
		{name: "user with space", target: kv{"user": `"prep user"`}, want: []string{"targets[0].user"}, wantMsg: "not a user name"},
		{name: "identity tilde", target: kv{"identity_file": "~/.ssh/id_ed25519"}, want: []string{"targets[0].identity_file"}, wantMsg: "~"},
		{name: "passphrase with agent", target: kv{"passphrase_env": "PASS"}, want: []string{"targets[0].passphrase_env"}, wantMsg: "identity_file"},
		{name: "passphrase bad name", target: kv{"identity_file": "/k", "passphrase_env": "1-PASS"}, want: []string{"targets[0].passphrase_env"}, wantMsg: "environment variable"},
		{name: "no host key", target: kv{"known_hosts": del}, want: []string{"targets[0].known_hosts"}, wantMsg: "host_key"},
		{name: "both host keys", target: kv{"host_key": `"` + hk + `"`}, want: []string{"targets[0].host_key"}, wantMsg: "only one"},
		{name: "host key garbage", target: kv{"known_hosts": del, "host_key": "not-a-key"}, want: []string{"targets[0].host_key"}, wantMsg: "ssh-ed25519"},
		{name: "host key is known_hosts line", target: kv{"known_hosts": del, "host_key": `"sftp.example ` + hk + `"`}, want: []string{"targets[0].host_key"}, wantMsg: "known_hosts line"},
		{name: "two host keys", target: kv{"known_hosts": del, "host_key": `"` + hk + `\n` + hk + `"`}, want: []string{"targets[0].host_key"}, wantMsg: "more than one"},
		{name: "no root", target: kv{"root": del}, want: []string{"targets[0].root"}, wantMsg: "is required"},
		{name: "relative root", target: kv{"root": "var/www"}, want: []string{"targets[0].root"}, wantMsg: `"/var/www"`},
		{name: "slash root", target: kv{"root": "/"}, want: []string{"targets[0].root"}, wantMsg: "web server"},
		{name: "unclean root", target: kv{"root": "/var/www/../prep/"}, want: []string{"targets[0].root"}, wantMsg: `"/var/prep"`},
		{name: "root control char", target: kv{"root": `"/var/www\tx"`}, want: []string{"targets[0].root"}, wantMsg: "control"},
		{name: "limit garbage", target: kv{"limit": "lots"}, want: []string{"targets[0].limit"}, wantMsg: "rate"},
		{name: "mode", target: kv{"mode": "ftp"}, want: []string{"targets[0].mode"}, wantMsg: `"exec"`},
		{name: "apply_command without exec", target: kv{"apply_command": "prepcast apply --root /r"}, want: []string{"targets[0].apply_command"}, wantMsg: "mode: exec"},
		{name: "disabled yes", target: kv{"disabled": "yes"}, want: []string{"targets[0].disabled"}, wantMsg: "true or false"},
		{name: "same server and root", extra: []kv{with(baseTarget, kv{"name": "otro", "address": "SFTP.diario.example:22"})}, want: []string{"targets[1].root"}, wantMsg: "fight over one ack"},
		{name: "nested roots", extra: []kv{with(baseTarget, kv{"name": "otro", "root": "/var/www/prep/espejo"})}, want: []string{"targets[1].root"}, wantMsg: "nested"},

		// Shape.
		{name: "unknown top field", top: kv{"sorce": "/x"}, want: []string{"sorce"}, wantMsg: `did you mean "source"`},
		{name: "unknown section field", top: kv{"schedule": "{evry: 10m}"}, want: []string{"schedule.evry"}, wantMsg: `did you mean "every"`},
		{name: "unknown target field", target: kv{"port": "22"}, want: []string{"targets[0].port"}, wantMsg: `did you mean "address"`},
		{name: "section as value", top: kv{"timeouts": "30s"}, want: []string{"timeouts"}, wantMsg: "mapping of fields (dial, operation, keepalive, cycle)"},
		{name: "value as list", target: kv{"user": "[a, b]"}, want: []string{"targets[0].user"}, wantMsg: "single value"},
		{name: "pointer as mapping", top: kv{"pointer": "{a: b}"}, want: []string{"pointer"}, wantMsg: "list of values"},
		{name: "pointer item list", top: kv{"pointer": "[[a]]"}, want: []string{"pointer[0]"}, wantMsg: "single value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := append([]kv{with(baseTarget, tc.target)}, tc.extra...)
			doc := render(with(baseTop, tc.top), ts...)
			c, err := config.Parse(doc, "/etc/prepcast")
			if err == nil {
				t.Fatalf("Parse succeeded, want errors for %v; config:\n%s", tc.want, doc)
			}
			if c != nil {
				t.Error("Parse returned a config with an error")
			}
			if got := fields(err); !slices.Equal(got, tc.want) {
				t.Fatalf("fields = %q, want %q; error:\n%v", got, tc.want, err)
			}
			fe := config.FieldErrors(err)[0]
			if !strings.Contains(fe.Msg, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", fe.Msg, tc.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), tc.want[0]+": ") {
				t.Errorf("error %q does not start with %q", err, tc.want[0]+": ")
			}
		})
	}
}

func TestDisabledTargetsMayShareRoot(t *testing.T) {
	other := with(baseTarget, kv{"name": "viejo", "disabled": "true"})
	if _, err := config.Parse(render(baseTop, baseTarget, other), "/"); err != nil {
		t.Errorf("a disabled copy of a target must be allowed: %v", err)
	}
}

// TestAllErrorsAtOnce checks that problems in different fields are all
// reported together, in one error.
func TestAllErrorsAtOnce(t *testing.T) {
	top := with(baseTop, kv{"source": del, "zone": "Nowhere/City", "schedule": "{every: 5s}", "limits": "{uplink: fast}", "typo": "1"})
	t1 := with(baseTarget, kv{"known_hosts": del, "mode": "ftp"})
	t2 := with(baseTarget, kv{"name": "diario", "address": "prep@x", "root": "/srv/x"})
	_, err := config.Parse(render(top, t1, t2), "/")
	want := []string{"typo", "source", "zone", "schedule.every", "limits.uplink",
		"targets[0].known_hosts", "targets[0].mode", "targets[1].name", "targets[1].address"}
	got := fields(err)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("fields = %q\nwant     %q\nerror:\n%v", got, want, err)
	}
}

func TestShapeErrors(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    []string
		wantMsg string
	}{
		{
			name:    "unknown field names its line",
			doc:     "source: /s\nstate_dir: /st\nsigning_key: /k\ntargets:\n  - name: a\n    knwon_hosts: /kh\n",
			want:    []string{"targets[0].knwon_hosts", "targets[0].address", "targets[0].user", "targets[0].known_hosts", "targets[0].root"},
			wantMsg: `unknown field at line 6 (did you mean "known_hosts"?)`,
		},
		{
			name:    "field set twice",
			doc:     "source: /s\nstate_dir: /st\nsigning_key: /k\nzone: UTC\nzone: America/Mexico_City\n",
			want:    []string{"zone"},
			wantMsg: "set twice (lines 4 and 5)",
		},
		{
			name: "target field set twice keeps other targets' indexes",
			doc: "source: /s\nstate_dir: /st\nsigning_key: /k\ntargets:\n" +
				"  - {name: a, name: b}\n" +
				"  - {name: c, address: h, user: u, known_hosts: /kh, root: /r, mode: bad}\n",
			want:    []string{"targets[0].name", "targets[1].mode"},
			wantMsg: "set twice",
		},
		{
			name: "target that is not a mapping keeps other targets' indexes",
			doc: "source: /s\nstate_dir: /st\nsigning_key: /k\ntargets:\n" +
				"  - just-a-name\n" +
				"  - {name: c, address: h, user: u, known_hosts: /kh, root: /r, mode: bad}\n",
			want:    []string{"targets[0]", "targets[1].mode"},
			wantMsg: "mapping of fields",
		},
		{
			name:    "empty target item",
			doc:     "source: /s\nstate_dir: /st\nsigning_key: /k\ntargets:\n  -\n",
			want:    []string{"targets[0]"},
			wantMsg: "is empty (line 5)",
		},
		{
			name:    "targets not a list",
			doc:     "source: /s\nstate_dir: /st\nsigning_key: /k\ntargets: diario\n",
			want:    []string{"targets"},
			wantMsg: "must be a list",
		},
		{
			name:    "merge of a value",
			doc:     "source: /s\nstate_dir: /st\nsigning_key: /k\nschedule:\n  <<: 10m\n",
			want:    []string{"schedule.<<"},
			wantMsg: "merge",
		},
		{
			name:    "empty file",
			doc:     "",
			want:    []string{"source", "state_dir", "signing_key"},
			wantMsg: "is required",
		},
		{
			name:    "comments only",
			doc:     "# nothing here\n",
			want:    []string{"source", "state_dir", "signing_key"},
			wantMsg: "is required",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.doc), "/")
			if got := fields(err); !slices.Equal(got, tc.want) {
				t.Fatalf("fields = %q, want %q; error:\n%v", got, tc.want, err)
			}
			if msg := config.FieldErrors(err)[0].Msg; !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", msg, tc.wantMsg)
			}
		})
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"bad indentation", "source: /s\n  state_dir: /x\n", "line 2"},
		{"unterminated quote", "source: /s\nstate_dir: /x\nsigning_key: 'unterminated\n", "line 3"},
		{"mapping in value", "source: /s\nstate_dir: a: b\n", "line 2"},
		{"tab indentation", "targets:\n\t- name: a\n", "line 2"},
		{"two documents", "source: /s\n---\nsource: /t\n", "second document"},
		{"not a mapping", "- source: /s\n", "must be a mapping"},
		{"scalar document", "hello\n", "must be a mapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.doc), "/")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestValidateAfterChange(t *testing.T) {
	c, err := config.Parse(render(baseTop, baseTarget), "/")
	if err != nil {
		t.Fatal(err)
	}
	c.Targets = append(c.Targets, c.Targets[0])
	c.Retry.Attempts = 0
	c.Targets[0].Address = "sftp.diario.example" // not normalized
	got := fields(c.Validate())
	want := []string{"retry.attempts", "targets[0].address", "targets[1].name"}
	if !slices.Equal(got, want) {
		t.Errorf("Validate fields = %q, want %q", got, want)
	}
}

// TestNestedMergesAreBounded checks that merges of merges, which double
// the work at each level, neither hang Parse nor pass.
func TestNestedMergesAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("targets:\n  - &t0 {name: x}\n")
	for i := 1; i < 60; i++ {
		fmt.Fprintf(&b, "  - &t%d {<<: [*t%d, *t%d]}\n", i, i-1, i-1)
	}
	start := time.Now()
	if _, err := config.Parse([]byte(b.String()), "/"); err == nil {
		t.Error("Parse accepted 2^60 merges")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse took %v", d)
	}
}

func TestDefaultApplyCommandQuotesRoot(t *testing.T) {
	for _, tt := range []struct{ root, want string }{
		{"/var/www/prep", "prepcast apply --root /var/www/prep"},
		{"/srv/www/elecciones 2024", "prepcast apply --root '/srv/www/elecciones 2024'"},
		{"/srv/it's", `prepcast apply --root '/srv/it'\''s'`},
		{"/srv/$(reboot)", "prepcast apply --root '/srv/$(reboot)'"},
	} {
		if got := config.DefaultApplyCommand(tt.root); got != tt.want {
			t.Errorf("DefaultApplyCommand(%q) = %s, want %s", tt.root, got, tt.want)
		}
	}
}

func TestTargetURLAndModes(t *testing.T) {
	for _, tc := range []struct {
		kv    kv
		field string
	}{
		{kv{"url": "ftp://x.example/"}, "url"},
		{kv{"url": "https://user:pw@x.example/"}, "url"},
		{kv{"url": "https:///nohost"}, "url"},
		{kv{"url": "https://x.example/?a=1"}, "url"},
		{kv{"file_mode": "0600"}, "file_mode"},
		{kv{"file_mode": "rw-r--r--"}, "file_mode"},
		{kv{"file_mode": "01777"}, "file_mode"},
		{kv{"dir_mode": "0700"}, "dir_mode"},
		{kv{"fsync_sessions": "-1"}, "fsync_sessions"},
		{kv{"fsync_sessions": "17"}, "fsync_sessions"},
		{kv{"fsync_sessions": "some"}, "fsync_sessions"},
		{kv{"allow_non_atomic_replace": "si"}, "allow_non_atomic_replace"},
		{kv{"file_mode": "0444", "dir_mode": "0555"}, "file_mode"},
	} {
		_, err := config.Parse(render(baseTop, with(baseTarget, tc.kv)), "/")
		if err == nil || !strings.Contains(err.Error(), "targets[0]."+tc.field) {
			t.Errorf("%v: err = %v, want one naming targets[0].%s", tc.kv, err, tc.field)
		}
	}
	c, err := config.Parse(render(baseTop, with(baseTarget, kv{"url": "http://127.0.0.1:8080/prep", "file_mode": "\"644\""})), "/")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Targets[0]; got.URL != "http://127.0.0.1:8080/prep/" || got.FileMode != 0o644 || got.DirMode != 0o755 {
		t.Errorf("url %q file_mode %o dir_mode %o", got.URL, got.FileMode, got.DirMode)
	}
}
