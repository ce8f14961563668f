package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/config"
)

// TestIdentityFileReadableByOthersIsRefused checks that a private key its
// group or others may read is refused, as ssh refuses it, with the chmod
// that fixes it; a key only its owner reads is accepted.
func TestIdentityFileReadableByOthersIsRefused(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		dir, file := site(t, nil)
		key := filepath.Join(dir, "etc/id_ed25519")
		if err := os.Chmod(key, mode); err != nil {
			t.Fatal(err)
		}
		_, err := config.Load(file)
		if err == nil {
			t.Fatalf("mode %04o: Load accepted a private key readable by others", mode)
		}
		for _, want := range []string{"targets[0].identity_file", key, "chmod 600 " + key} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("mode %04o: error %q does not mention %q", mode, err, want)
			}
		}
	}
	dir, file := site(t, nil)
	if err := os.Chmod(filepath.Join(dir, "etc/id_ed25519"), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(file); err != nil {
		t.Errorf("a key of mode 0400 is refused: %v", err)
	}
}

// TestPassphraseInPassphraseEnvIsNotEchoed checks that a passphrase written
// where the name of its environment variable belongs never appears in the
// error.
func TestPassphraseInPassphraseEnvIsNotEchoed(t *testing.T) {
	const secret = "correct horse-battery staple!"
	_, file := site(t, nil, kv{
		"name": "diario", "address": "sftp.diario.example:2222", "user": "prep",
		"identity_file": "id_ed25519", "known_hosts": "known_hosts", "root": "/var/www/prep",
		"passphrase_env": secret,
	})
	_, err := config.Load(file)
	if err == nil {
		t.Fatal("Load accepted a passphrase as passphrase_env")
	}
	if strings.Contains(err.Error(), "horse") || strings.Contains(err.Error(), "staple") {
		t.Errorf("the error echoes the passphrase: %v", err)
	}
	if !strings.Contains(err.Error(), "targets[0].passphrase_env") {
		t.Errorf("the error does not name the field: %v", err)
	}
}

func TestVerifySection(t *testing.T) {
	c, err := config.Parse([]byte(`source: /srv/prep
state_dir: /var/lib/prepcast
signing_key: /etc/prepcast/manifest.key
verify: {period: 12h, bytes_per_push: 64MiB, files_per_push: 500, time_per_push: 1m}
`), "/etc/prepcast")
	if err != nil {
		t.Fatal(err)
	}
	if want := (config.Verify{Period: 12 * time.Hour, BytesPerPush: 64 << 20, FilesPerPush: 500, TimePerPush: time.Minute}); c.Verify != want {
		t.Errorf("verify = %+v, want %+v", c.Verify, want)
	}
	for _, bad := range []string{"period: -1h", "bytes_per_push: 64MiB/s", "bytes_per_push: lots", "files_per_push: -3", "time_per_push: -1s", "time_per_push: soon"} {
		_, err := config.Parse([]byte("source: /srv/prep\nstate_dir: /var/lib/prepcast\nsigning_key: /etc/prepcast/manifest.key\nverify: {"+bad+"}\n"), "/etc/prepcast")
		if err == nil || !strings.Contains(err.Error(), "verify.") {
			t.Errorf("verify {%s}: error %v, want one naming the verify field", bad, err)
		}
	}
}
