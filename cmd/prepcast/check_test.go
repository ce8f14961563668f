package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prepcast/prepcast/check"
	"github.com/prepcast/prepcast/integration/nginxtest"
	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/packager"
)

// TestCheckListStatusCommands runs "prepcast check" against a real sshd
// and nginx: --json is one document of the named schema and exit 0;
// --report writes the Spanish Markdown and the JSON; the result is kept so
// that "status --json" shows last_check and "list --passed-only" lists the
// difusor with its logo. Usage errors exit 2.
func TestCheckListStatusCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd and nginx")
	}
	s := sshdtest.Start(t, sshdtest.Options{})
	os.MkdirAll(filepath.Join(s.WebRoot(), "json"), 0o755)
	os.WriteFile(filepath.Join(s.WebRoot(), "json", "main.json"), []byte("{}"), 0o644)
	ng := nginxtest.Start(t, nginxtest.Options{Root: s.WebRoot()})

	dir := t.TempDir()
	if _, _, err := packager.GenerateKey(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "results"), 0o755)
	var lb bytes.Buffer
	png.Encode(&lb, image.NewGray(image.Rect(0, 0, 30, 10)))
	logo := filepath.Join(dir, "logo.png")
	os.WriteFile(logo, lb.Bytes(), 0o644)
	cfg := filepath.Join(dir, "prepcast.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`source: %s
state_dir: %s
signing_key: %s
targets:
  - {name: diario, display_name: "Diario Ejemplo", logo: %s, contact: "sistemas@diario.example", address: %q, user: %s, identity_file: %s, host_key: %q, root: %s, url: %q}
check: {min_free_disk: 1MB, min_upload_rate: 100kB/s, upload_test: 1s}
`, filepath.Join(dir, "results"), filepath.Join(dir, "state"), filepath.Join(dir, "keys", "manifest.key"), logo,
		s.Addr(), s.User(), s.ClientKeyPath(), s.HostKeyLine(), s.Root(), ng.URL)), 0o644)

	ctx := context.Background()
	var out, errb bytes.Buffer
	reports := filepath.Join(dir, "reports")
	code := run(ctx, []string{"check", "--config", cfg, "--json", "--report", reports}, &out, &errb)
	var res check.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("--json is not one JSON document: %v\n%s", err, out.String())
	}
	if code != 0 || res.Schema != check.Schema || !res.Passed || len(res.Difusores) != 1 || len(res.Difusores[0].Rows) < 10 {
		t.Fatalf("exit %d, schema %q, passed %v: %s\nstderr: %s", code, res.Schema, res.Passed, out.String(), errb.String())
	}
	mds, _ := filepath.Glob(filepath.Join(reports, "diario-*.md"))
	jsons, _ := filepath.Glob(filepath.Join(reports, "diario-*.json"))
	if len(mds) != 1 || len(jsons) != 1 {
		t.Fatalf("reports: %v %v", mds, jsons)
	}
	md, _ := os.ReadFile(mds[0])
	for _, w := range []string{"Informe de verificación del difusor Diario Ejemplo", "20 GB libres en disco", "40 MB/seg mínimo en el servicio de sftp o ssh", "tiempo del centro", "CUMPLE"} {
		if !strings.Contains(string(md), w) {
			t.Errorf("the report lacks %q:\n%s", w, md)
		}
	}
	var doc map[string]any
	if b, _ := os.ReadFile(jsons[0]); json.Unmarshal(b, &doc) != nil || doc["schema"] != check.Schema || doc["passed"] != true {
		t.Errorf("report JSON: %v", doc)
	}

	out.Reset()
	if code := run(ctx, []string{"status", "--config", cfg, "--json"}, &out, &errb); code > 1 {
		t.Fatalf("status exit %d: %s", code, errb.String())
	}
	var st struct {
		Targets []struct {
			Name      string `json:"name"`
			LastCheck *struct {
				Passed bool `json:"passed"`
			} `json:"last_check"`
		} `json:"targets"`
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || len(st.Targets) != 1 || st.Targets[0].LastCheck == nil || !st.Targets[0].LastCheck.Passed {
		t.Errorf("status does not show the passed check: %v %s", err, out.String())
	}

	page := filepath.Join(dir, "difusores.html")
	out.Reset()
	if code := run(ctx, []string{"list", "--config", cfg, "--html", page, "--passed-only"}, &out, &errb); code != 0 {
		t.Fatalf("list exit %d: %s", code, errb.String())
	}
	html, _ := os.ReadFile(page)
	for _, w := range []string{`lang="es-MX"`, "Diario Ejemplo", `href="` + ng.URL + `"`, "data:image/png;base64,", "Verificado el"} {
		if !strings.Contains(string(html), w) {
			t.Errorf("the list lacks %q", w)
		}
	}

	// A requirement that fails: exit 1, and the list with --passed-only
	// leaves the difusor out.
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(b, []byte("min_upload_rate: 100kB/s"), []byte("min_upload_rate: 1000GB/s"), 1), 0o644)
	out.Reset()
	if code := run(ctx, []string{"check", "--config", cfg}, &out, &errb); code != exitFailed || !strings.Contains(out.String(), "upload_rate") {
		t.Errorf("failing check: exit %d, want %d:\n%s", code, exitFailed, out.String())
	}
	if code := run(ctx, []string{"list", "--config", cfg, "--html", page, "--passed-only"}, &out, &errb); code != 0 {
		t.Fatalf("list exit %d: %s", code, errb.String())
	}
	if html, _ := os.ReadFile(page); strings.Contains(string(html), "Diario Ejemplo") {
		t.Error("--passed-only lists a difusor whose latest check failed")
	}

	for _, args := range [][]string{
		{"check", "--config", cfg, "--target", "nadie"},
		{"check", "--config", cfg, "--lang", "fr"},
		{"list", "--config", cfg},
	} {
		if code := run(ctx, args, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}
