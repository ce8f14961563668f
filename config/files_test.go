package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prepcast/prepcast/config"
)

// site lays out a working installation in a temporary directory and returns
// the directory and the config file's path. The config uses relative paths.
func site(t *testing.T, top kv, targets ...kv) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	for _, d := range []string{"results/json", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/manifest.key", "etc/id_ed25519", "etc/known_hosts"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := kv{"source": "../results", "state_dir": "../state", "signing_key": "manifest.key"}
	if len(targets) == 0 {
		targets = []kv{{
			"name": "diario", "address": "sftp.diario.example:2222", "user": "prep",
			"identity_file": "id_ed25519", "known_hosts": "known_hosts", "root": "/var/www/prep",
		}}
	}
	file = filepath.Join(dir, "etc", "prepcast.yaml")
	if err := os.WriteFile(file, render(with(base, top), targets...), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

func TestLoad(t *testing.T) {
	dir, file := site(t, nil)
	c, err := config.Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, p := range []struct{ got, want string }{
		{c.Path, file},
		{c.Source, filepath.Join(dir, "results")},
		{c.StateDir, filepath.Join(dir, "state")},
		{c.SigningKey, filepath.Join(dir, "etc/manifest.key")},
		{c.Log.File, filepath.Join(dir, "state/prepcast.log")},
		{c.Targets[0].IdentityFile, filepath.Join(dir, "etc/id_ed25519")},
		{c.Targets[0].KnownHosts, filepath.Join(dir, "etc/known_hosts")},
	} {
		if p.got != p.want {
			t.Errorf("path = %q, want %q", p.got, p.want)
		}
	}
	if _, err := os.Stat(c.StateDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load created or touched state_dir: %v", err)
	}
}

func TestLoadRelativeConfigPath(t *testing.T) {
	dir, _ := site(t, nil)
	t.Chdir(dir)
	c, err := config.Load("etc/prepcast.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "etc/prepcast.yaml"); c.Path != want {
		t.Errorf("Path = %q, want %q", c.Path, want)
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(dir string) error
		top     kv
		want    []string
		wantMsg string
	}{
		{
			name:    "source missing",
			breakIt: func(dir string) error { return os.RemoveAll(filepath.Join(dir, "results")) },
			want:    []string{"source"}, wantMsg: "does not exist",
		},
		{
			name:    "source is a file",
			breakIt: func(dir string) error { return os.WriteFile(filepath.Join(dir, "file"), nil, 0o644) },
			top:     kv{"source": "../file"},
			want:    []string{"source"}, wantMsg: "not a directory",
		},
		{
			name: "state_dir is a file",
			breakIt: func(dir string) error {
				return os.WriteFile(filepath.Join(dir, "state"), nil, 0o644)
			},
			want: []string{"state_dir"}, wantMsg: "not a directory",
		},
		{
			name:    "state_dir parent missing",
			top:     kv{"state_dir": "../var/lib/prepcast"},
			want:    []string{"state_dir"},
			wantMsg: "creates state_dir itself, but not its parents",
		},
		{
			name:    "signing_key missing",
			breakIt: func(dir string) error { return os.Remove(filepath.Join(dir, "etc/manifest.key")) },
			want:    []string{"signing_key"}, wantMsg: "prepcast keygen",
		},
		{
			name:    "signing_key is a directory",
			breakIt: func(dir string) error { return os.Mkdir(filepath.Join(dir, "etc/keydir"), 0o755) },
			top:     kv{"signing_key": "keydir"},
			want:    []string{"signing_key"}, wantMsg: "is a directory",
		},
		{
			name:    "identity_file missing",
			breakIt: func(dir string) error { return os.Remove(filepath.Join(dir, "etc/id_ed25519")) },
			want:    []string{"targets[0].identity_file"}, wantMsg: "ssh-keygen -t ed25519",
		},
		{
			name:    "known_hosts missing",
			breakIt: func(dir string) error { return os.Remove(filepath.Join(dir, "etc/known_hosts")) },
			want:    []string{"targets[0].known_hosts"}, wantMsg: `run "ssh-keyscan -p 2222 sftp.diario.example >> `,
		},
		{
			name: "log directory missing",
			top:  kv{"log": "{file: ../logs/prepcast.log}"},
			want: []string{"log.file"}, wantMsg: "does not exist",
		},
		{
			name: "everything missing at once",
			breakIt: func(dir string) error {
				return errors.Join(
					os.RemoveAll(filepath.Join(dir, "results")),
					os.Remove(filepath.Join(dir, "etc/manifest.key")),
					os.Remove(filepath.Join(dir, "etc/id_ed25519")),
					os.Remove(filepath.Join(dir, "etc/known_hosts")))
			},
			want:    []string{"source", "signing_key", "targets[0].identity_file", "targets[0].known_hosts"},
			wantMsg: "does not exist",
		},
		{
			name: "signing_key in source through a symlink",
			breakIt: func(dir string) error {
				return errors.Join(
					os.WriteFile(filepath.Join(dir, "results/k"), nil, 0o600),
					os.Symlink(filepath.Join(dir, "results"), filepath.Join(dir, "etc/published")))
			},
			top:  kv{"signing_key": "published/k"},
			want: []string{"signing_key"}, wantMsg: "published to every difusor",
		},
		{
			name: "state_dir in source through a symlink",
			breakIt: func(dir string) error {
				return os.Symlink(filepath.Join(dir, "results"), filepath.Join(dir, "link"))
			},
			top:  kv{"state_dir": "../link/state"},
			want: []string{"state_dir"}, wantMsg: "inside source",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, file := site(t, tc.top)
			if tc.breakIt != nil {
				if err := tc.breakIt(dir); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := config.Read(file); err != nil {
				t.Fatalf("Read (no file checks) failed: %v", err)
			}
			c, err := config.Load(file)
			if err == nil {
				t.Fatalf("Load succeeded, want errors for %v", tc.want)
			}
			if c != nil {
				t.Error("Load returned a config with an error")
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Path != file {
				t.Errorf("error %T does not name the config file %s", err, file)
			}
			if got := fields(err); !slices.Equal(got, tc.want) {
				t.Fatalf("fields = %q, want %q; error:\n%v", got, tc.want, err)
			}
			if msg := config.FieldErrors(err)[0].Msg; !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", msg, tc.wantMsg)
			}
		})
	}
}

func TestLoadDisabledTargetFilesNotChecked(t *testing.T) {
	tg := kv{"name": "viejo", "address": "old.example", "user": "prep", "identity_file": "gone",
		"known_hosts": "gone_too", "root": "/var/www", "disabled": "true"}
	_, file := site(t, nil, tg)
	if _, err := config.Load(file); err != nil {
		t.Errorf("Load with a disabled target whose files are gone: %v", err)
	}
}

func TestLoadUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	dir, file := site(t, nil)
	if err := os.Chmod(filepath.Join(dir, "etc/known_hosts"), 0); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(file)
	if got := fields(err); !slices.Equal(got, []string{"targets[0].known_hosts"}) {
		t.Fatalf("fields = %q, want the unreadable known_hosts; error: %v", got, err)
	}
	if !strings.Contains(err.Error(), "readable") {
		t.Errorf("error %q does not say to make the file readable", err)
	}
}

func TestLoadErrorFormat(t *testing.T) {
	_, file := site(t, kv{"zone": "Nowhere", "retry": "{attempts: 0}"})
	_, err := config.Load(file)
	want := "config " + file + ": 2 problems:\n  zone: "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q, want it to start with %q", err, want)
	}
	if !strings.Contains(err.Error(), "\n  retry.attempts: ") {
		t.Errorf("error = %q, want retry.attempts on its own line", err)
	}

	// One problem stays on one line.
	dir2, file2 := site(t, nil)
	if err := os.Remove(filepath.Join(dir2, "etc/manifest.key")); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(file2)
	if want := "config " + file2 + ": signing_key: file "; err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error = %q, want one line starting with %q", err, want)
	}
}

func TestLoadSyntaxErrorNamesFileAndLine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "prepcast.yaml")
	if err := os.WriteFile(file, []byte("source: /s\nstate_dir: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(file)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "line ") {
		t.Errorf("error = %v, want the file name and a line number", err)
	}
}

func TestLoadMissingConfig(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "prepcast.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "--config") {
		t.Errorf("error = %v, want fs.ErrNotExist and a hint about --config", err)
	}
}
