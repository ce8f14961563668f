package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"

	"github.com/prepcast/prepcast/integration/nginxtest"
	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
)

// The difusor's guide (docs/difusores.md) is tested as a difusor would use
// it: its snippets are copied out of the guide, their example paths and
// names replaced by the test's, and run on real sshd and nginx.

const guidePath = "../docs/difusores.md"

// guideBlocks returns the fenced code blocks of the guide whose info string
// is lang, with the indentation of a list item removed.
func guideBlocks(t *testing.T, lang string) []string {
	t.Helper()
	data, err := os.ReadFile(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur []string
	indent, in := "", false
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case !in && trimmed == "```"+lang:
			in, cur, indent = true, nil, line[:len(line)-len(trimmed)]
		case in && trimmed == "```":
			in = false
			out = append(out, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, strings.TrimPrefix(line, indent))
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no ```%s block", guidePath, lang)
	}
	return out
}

// TestGuideSFTPAccountAndNginxRules sets up a difusor exactly as the guide
// says (the chrooted internal-sftp account of section 2, the nginx rules of
// section 3), publishes two cuts to it and reads them back through nginx
// running as another user: every file of the cut served with its signed
// bytes, main.json with the call's Cache-Control, prepcast's private
// directory refused.
func TestGuideSFTPAccountAndNginxRules(t *testing.T) {
	if reason := sshdtest.Unavailable(); reason != "" && os.Getenv(sshdtest.RequireEnv) != "1" {
		t.Skip(reason)
	}
	// The account's chroot: root-owned all the way up, the webroot inside.
	jail, err := os.MkdirTemp(sshdtest.ChrootBase, "guide-")
	if err != nil {
		if err := os.MkdirAll(sshdtest.ChrootBase, 0o755); err != nil {
			t.Fatal(err)
		}
		if jail, err = os.MkdirTemp(sshdtest.ChrootBase, "guide-"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.RemoveAll(jail) })
	if err := os.Chmod(jail, 0o755); err != nil {
		t.Fatal(err)
	}
	webroot := filepath.Join(jail, "www")
	if err := os.Mkdir(webroot, 0o755); err != nil {
		t.Fatal(err)
	}

	block := guideBlocks(t, "sshd_config")[0]
	keys := filepath.Join(t.TempDir(), "authorized_keys")
	block = strings.NewReplacer("Match User prep", "Match User root", "/srv/prep", jail,
		"/etc/ssh/prep/authorized_keys", keys).Replace(block)
	var extra []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		extra = append(extra, strings.TrimSpace(l))
	}
	s := sshdtest.Start(t, sshdtest.Options{ExtraConfig: extra})
	copyFile(t, filepath.Join(s.Dir(), "authorized_keys"), keys)

	web := nginxtest.Start(t, nginxtest.Options{Root: webroot, Rules: guideBlocks(t, "nginx")[0]})

	e := newEnv(t, 0)
	// The account sees its chroot: the webroot is /www, as the guide says.
	tg2, err := sftptarget.New(sftptarget.Config{Name: "difusor-guia", Address: s.Addr(), User: s.User(), Root: "/www",
		IdentityFile: s.ClientKeyPath(), HostKey: s.HostKeyLine(),
		DialTimeout: 5 * time.Second, OpTimeout: 10 * time.Second, Keepalive: 2 * time.Second}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg2.Close() })
	eng := e.engine()
	for k := 1; k <= 2; k++ {
		ci := e.nextCut()
		r := eng.Push(context.Background(), []publisher.TargetSpec{{Target: tg2}})[0]
		if r.Err != nil {
			t.Fatalf("cut %d through the guide's account: %v", k, r.Err)
		}
		m, _, err := e.store.Manifest(ci.Seq)
		if err != nil {
			t.Fatal(err)
		}
		for _, ent := range m.Entries {
			body, resp := fetchURL(t, web.URL+ent.Path)
			if resp.StatusCode != 200 {
				t.Fatalf("cut %d: %s answered %d through nginx", k, ent.Path, resp.StatusCode)
			}
			if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != ent.SHA256 {
				t.Fatalf("cut %d: %s served other bytes than the signed cut", k, ent.Path)
			}
			if ent.Path == "json/main.json" {
				if cc := resp.Header.Get("Cache-Control"); cc != "no-cache, no-store, must-revalidate" {
					t.Errorf("json/main.json Cache-Control %q", cc)
				}
				if resp.Header.Get("Expires") != "" {
					t.Errorf("json/main.json also carries Expires %q", resp.Header.Get("Expires"))
				}
			}
		}
	}
	if _, resp := fetchURL(t, web.URL+".prepcast/ack.json"); resp.StatusCode != 403 {
		t.Errorf(".prepcast/ack.json answered %d, want 403", resp.StatusCode)
	}
	// The public proof directory is served, its index never cached.
	proof := filepath.Join(webroot, ".well-known", "prepcast")
	if err := os.MkdirAll(proof, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(proof, "index.json")); err != nil {
		if err := os.WriteFile(filepath.Join(proof, "index.json"), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, resp := fetchURL(t, web.URL+".well-known/prepcast/index.json")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache, no-store, must-revalidate" {
		t.Errorf(".well-known/prepcast/index.json: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
}

// TestGuideForcedCommand installs the guide's forced command (section 5):
// the institute's key may run only "prepcast apply" on the root with the
// institute's public key, or SFTP. Package mode publishes through it, the
// retired files are deleted over SFTP through it, and a command the
// publisher asks for is replaced by the forced one.
func TestGuideForcedCommand(t *testing.T) {
	bin := buildPrepcast(t)
	e := newEnv(t, 1)
	s := e.servers[0]
	e.gen.imagesPerCut, e.gen.imageMax = 10, 40<<10
	pubFile := filepath.Join(t.TempDir(), "instituto.pub")
	if err := os.WriteFile(pubFile, packager.EncodePublicKey(e.pub), 0o644); err != nil {
		t.Fatal(err)
	}
	sftpServer := "/usr/lib/openssh/sftp-server"
	if _, err := os.Stat(sftpServer); err != nil {
		t.Skipf("no %s here", sftpServer)
	}
	var script string
	for _, b := range guideBlocks(t, "sh") {
		if strings.HasPrefix(b, "#!/bin/sh") {
			script = b
		}
	}
	if script == "" {
		t.Fatalf("%s has no forced-command script", guidePath)
	}
	script = strings.NewReplacer("/usr/lib/openssh/sftp-server", sftpServer, "/usr/local/bin/prepcast", bin,
		"/srv/prep/www", s.Root(), "/etc/prepcast/instituto.pub", pubFile).Replace(script)
	wrapper := filepath.Join(t.TempDir(), "prepcast-difusor")
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(guideBlocks(t, "authorized_keys")[0])
	m := regexp.MustCompile(`^command="([^"]+)",restrict ssh-ed25519 \S+ (.*)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("the guide's authorized_keys line is not command=\"…\",restrict ssh-ed25519 KEY COMMENT: %q", line)
	}
	clientPub := readClientPub(t, s.ClientKeyPath())
	keyLine := strings.Replace(line, m[1], wrapper, 1)
	keyLine = regexp.MustCompile(`ssh-ed25519 \S+`).ReplaceAllLiteralString(keyLine, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(clientPub))))
	if err := os.WriteFile(filepath.Join(s.Dir(), "authorized_keys"), []byte(keyLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	eng := e.engine()
	clock := time.Now()
	eng.Now = func() time.Time { return clock }
	// The publisher asks for another command; the forced one runs instead.
	spec := []publisher.TargetSpec{{Target: e.targets[0], Apply: "/bin/false"}}
	for k := 1; k <= 3; k++ {
		ci := e.nextCut()
		if r := eng.Push(context.Background(), spec)[0]; r.Err != nil {
			t.Fatalf("cut %d through the forced command: %v", k, r.Err)
		}
		e.checkTarget(s.WebRoot(), ci.Seq)
		clock = clock.Add(2 * eng.RetentionWindow)
		if r := eng.Push(context.Background(), spec)[0]; r.Err != nil {
			t.Fatalf("cut %d, deleting retired files over SFTP: %v", k, r.Err)
		}
		if a := readAck(t, s.WebRoot()); k > 1 && len(a.Retired) != 0 {
			t.Fatalf("cut %d: retired files not deleted through the forced command: %v", k, a.Retired)
		}
	}
	// A shell command is not what the key may run.
	out, err := s.SSHCommand("touch", filepath.Join(s.WebRoot(), "intruso")).CombinedOutput()
	if _, serr := os.Stat(filepath.Join(s.WebRoot(), "intruso")); serr == nil {
		t.Fatalf("the institute's key ran a shell command through the forced command (%v: %s)", err, out)
	}
}

func fetchURL(t *testing.T, url string) ([]byte, *http.Response) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	return body, resp
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readClientPub(t *testing.T, keyPath string) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(keyPath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// apachePath is Debian's Apache httpd (package apache2).
const apachePath = "/usr/sbin/apache2"

// startApache serves root with Apache httpd on 127.0.0.1 (workers as
// nobody), with rules at the server level, until the test ends.
func startApache(t *testing.T, root, rules string) string {
	t.Helper()
	if _, err := os.Stat(apachePath); err != nil {
		if os.Getenv(sshdtest.RequireEnv) == "1" {
			t.Fatalf("%s not found (install the Debian package apache2)", apachePath)
		}
		t.Skipf("%s not found (install the Debian package apache2)", apachePath)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := root; p != "/"; p = filepath.Dir(p) { // the workers, as nobody, must reach root
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
			_ = os.Chmod(p, fi.Mode().Perm()|0o001)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	mod := func(name, file string) string {
		return fmt.Sprintf("LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n", name, file)
	}
	conf := "Listen " + addr + "\nServerName localhost\nPidFile " + dir + "/httpd.pid\nErrorLog " + dir + "/error.log\n" +
		"DefaultRuntimeDir " + dir + "\nMutex file:" + dir + " default\nUser nobody\nGroup nogroup\n" +
		mod("mpm_event", "mpm_event") + mod("authz_core", "authz_core") + mod("headers", "headers") +
		mod("alias", "alias") + mod("mime", "mime") +
		"TypesConfig /etc/mime.types\nDocumentRoot " + root + "\n<Directory " + root + ">\n    Require all granted\n</Directory>\n" + rules
	cfg := filepath.Join(dir, "httpd.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(apachePath, "-f", cfg, "-DFOREGROUND")
	cmd.Env = append(os.Environ(), "APACHE_RUN_DIR="+dir, "APACHE_LOG_DIR="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	url := "http://" + addr + "/"
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return url
		}
		if time.Since(start) > 10*time.Second {
			elog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("apache did not start: %s\n%s", stderr.String(), elog)
		}
	}
}

// TestGuideApacheRules serves a webroot with the guide's Apache rules
// (section 3): main.json and the proof index never cached, with the call's
// exact Cache-Control and no Expires; prepcast's private directory not
// served; the published proof and the cut's files served as they are.
func TestGuideApacheRules(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"json/main.json":                  `{"corte":1}`,
		".prepcast/ack.json":              `{"seq":1}`,
		".well-known/prepcast/index.json": `{"cuts":[]}`,
		"datos/PUE_GUB_2024.csv":          "SECCION,VOTOS\n1,10\n",
	}
	for p, body := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	url := startApache(t, root, guideBlocks(t, "apache")[0])
	for _, p := range []string{"json/main.json", ".well-known/prepcast/index.json"} {
		body, resp := fetchURL(t, url+p)
		if resp.StatusCode != 200 || string(body) != files[p] {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-cache, no-store, must-revalidate" {
			t.Errorf("%s: Cache-Control %q", p, cc)
		}
		if e := resp.Header.Get("Expires"); e != "" {
			t.Errorf("%s: Expires %q contradicts the rule", p, e)
		}
	}
	if body, resp := fetchURL(t, url+"datos/PUE_GUB_2024.csv"); resp.StatusCode != 200 || string(body) != files["datos/PUE_GUB_2024.csv"] {
		t.Errorf("a cut's file: %d %q", resp.StatusCode, body)
	}
	for _, p := range []string{".prepcast/ack.json", ".prepcast/", ".prepcast"} {
		if body, resp := fetchURL(t, url+p); resp.StatusCode == 200 || strings.Contains(string(body), `"seq"`) {
			t.Errorf("%s is served (%d)", p, resp.StatusCode)
		}
	}
}
