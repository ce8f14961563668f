package servers

import (
	"bytes"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// dial logs in to s with its client key, accepting only the host key in
// its KnownHostsLine, as prepcast pins it.
func dial(t *testing.T, s *Server) *ssh.Client {
	t.Helper()
	known := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(known, []byte(s.KnownHostsLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(known)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(s.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.HostKey))
	if err != nil {
		t.Fatalf("host key %q: %v", s.HostKey, err)
	}
	// Offer only the pinned key's algorithm, as prepcast does: dropbear
	// 2022.83 aborts a handshake that picks an algorithm it has no key for.
	conn, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: cb, HostKeyAlgorithms: []string{hostKey.Type()}, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh login as %s to %s: %v", s.User, s.Addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Every server starts, pins its own host key, lets the login user in with
// the client key only, serves its webroot at Root, and shows exactly the
// limits its Spec declares: the extensions it offers, the modes new files
// get, whether a second session is allowed.
func TestEachServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	for _, spec := range Specs() {
		t.Run(spec.Name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, spec)
			if s.User == "root" || s.User == "" {
				t.Errorf("login user %q; want the non-root %s", s.User, LoginUser)
			}
			conn := dial(t, s)
			c, err := sftp.NewClient(conn)
			if err != nil {
				t.Fatalf("sftp session: %v", err)
			}
			defer c.Close()

			dir := path.Join(s.Root, "json")
			if err := c.MkdirAll(dir); err != nil {
				t.Fatalf("mkdir %s: %v", dir, err)
			}
			put := func(name string, data []byte) {
				t.Helper()
				f, err := c.Create(name)
				if err != nil {
					t.Fatalf("create %s: %v", name, err)
				}
				if _, err := f.Write(data); err != nil {
					t.Fatalf("write %s: %v", name, err)
				}
				if err := f.Close(); err != nil {
					t.Fatalf("close %s: %v", name, err)
				}
			}
			final := path.Join(dir, "main.json")
			data := []byte(`{"corte":"20240602_2000"}`)
			put(final, data)
			local := filepath.Join(s.WebRoot, "json", "main.json")
			if got, err := os.ReadFile(local); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("webroot %s = %q, %v; want what was written at %s", local, got, err, final)
			}
			fi, err := os.Stat(local)
			if err != nil {
				t.Fatal(err)
			}
			di, err := os.Stat(filepath.Dir(local))
			if err != nil {
				t.Fatal(err)
			}
			othersRead := fi.Mode().Perm()&0o004 != 0 && di.Mode().Perm()&0o005 == 0o005
			if want := !spec.Has(RestrictiveModes); othersRead != want {
				t.Errorf("new file %v in directory %v: readable by others %v, want %v", fi.Mode().Perm(), di.Mode().Perm(), othersRead, want)
			}
			if err := c.Chmod(final, 0o644); err != nil {
				t.Errorf("chmod 0644 over SFTP: %v", err)
			} else if fi, err := os.Stat(local); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("after chmod 0644 over SFTP the file is %v (%v)", fi.Mode().Perm(), err)
			}

			// posix-rename@openssh.com replaces main.json, or is refused
			// (sftp-server -P lists the extension but refuses it).
			staged := path.Join(dir, "main.json.new")
			put(staged, []byte("{}"))
			err = c.PosixRename(staged, final)
			if renamed := err == nil; renamed == spec.Has(NoPosixRename) {
				t.Errorf("posix-rename over an existing file: %v; want it to succeed: %v", err, !spec.Has(NoPosixRename))
			}
			if err == nil {
				data = []byte("{}")
			}
			rd, err := c.Open(final)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			back, err := io.ReadAll(rd)
			rd.Close()
			if err != nil || !bytes.Equal(back, data) {
				t.Errorf("read back %q, %v; want %q", back, err, data)
			}

			second, err := sftp.NewClient(conn)
			if err == nil {
				second.Close()
			}
			if refused := err != nil; refused != spec.Has(OneSession) {
				t.Errorf("second session on one connection refused: %v (%v), want %v", refused, err, spec.Has(OneSession))
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if _, err := c.Stat(s.Root); err == nil {
				t.Error("session still answers after Close")
			}
		})
	}
}

func TestUnavailableNamesPackage(t *testing.T) {
	spec := Spec{Name: "x", Packages: []string{"pkg-one", "pkg-two"}, Binaries: []string{"/nonexistent/prepcast-server"}}
	reason := Unavailable(spec)
	if os.Geteuid() != 0 {
		t.Skip("not root: " + reason)
	}
	if !strings.Contains(reason, "pkg-one pkg-two") || !strings.Contains(reason, "/nonexistent/prepcast-server") {
		t.Errorf("Unavailable = %q; want the missing file and the Debian packages", reason)
	}
}

func TestSpecsNamesUnique(t *testing.T) {
	var names []string
	quick := 0
	for _, s := range Specs() {
		if slices.Contains(names, s.Name) {
			t.Errorf("two specs named %s", s.Name)
		}
		names = append(names, s.Name)
		if s.Quick {
			quick++
		}
		if len(s.Packages) == 0 || len(s.Binaries) == 0 || s.start == nil {
			t.Errorf("%s: packages, binaries and start are required", s.Name)
		}
	}
	if quick < 2 {
		t.Errorf("%d quick specs; the default run needs an OpenSSH one and another server", quick)
	}
	if _, ok := Lookup("proftpd"); !ok {
		t.Error(`Lookup("proftpd") found nothing`)
	}
	if _, ok := Lookup("nonexistent"); ok {
		t.Error("Lookup of an unknown name succeeded")
	}
}
