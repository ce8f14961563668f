package nginxtest

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestServesWithDifusorRules checks the harness and the documented rules:
// the pointer comes back with the call's Cache-Control, prepcast's private
// directory is refused, and a file another user cannot read is a 403.
func TestServesWithDifusorRules(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "json"), 0o755))
	must(os.MkdirAll(filepath.Join(root, ".prepcast"), 0o755))
	must(os.WriteFile(filepath.Join(root, "json/main.json"), []byte(`{"cut":1}`), 0o644))
	must(os.WriteFile(filepath.Join(root, ".prepcast/ack.json"), []byte(`{}`), 0o644))
	must(os.MkdirAll(filepath.Join(root, ".well-known/prepcast/cuts"), 0o755))
	must(os.WriteFile(filepath.Join(root, ".well-known/prepcast/index.json"), []byte(`{"cuts":[]}`), 0o644))
	must(os.WriteFile(filepath.Join(root, ".well-known/prepcast/cuts/000001-ab.sig"), []byte("ed25519 x\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "private.csv"), []byte("x"), 0o600))
	s := Start(t, Options{Root: root})

	get := func(p string) (*http.Response, string) {
		resp, err := http.Get(s.URL + p)
		must(err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("json/main.json")
	if resp.StatusCode != 200 || body != `{"cut":1}` {
		t.Fatalf("main.json: %d %q", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache, no-store, must-revalidate" {
		t.Errorf("main.json Cache-Control %q", cc)
	}
	resp, body = get(".well-known/prepcast/index.json")
	if resp.StatusCode != 200 || body != `{"cuts":[]}` || resp.Header.Get("Cache-Control") != "no-cache, no-store, must-revalidate" {
		t.Errorf("proof index: %d %q, Cache-Control %q", resp.StatusCode, body, resp.Header.Get("Cache-Control"))
	}
	if resp, body := get(".well-known/prepcast/cuts/000001-ab.sig"); resp.StatusCode != 200 || body != "ed25519 x\n" {
		t.Errorf("proof signature: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(".prepcast/ack.json"); resp.StatusCode != 403 {
		t.Errorf(".prepcast/ack.json: %d, want 403", resp.StatusCode)
	}
	if resp, _ := get("private.csv"); resp.StatusCode != 403 {
		t.Errorf("a 0600 file: %d, want 403 (workers must run as %s)", resp.StatusCode, WorkerUser)
	}
}
