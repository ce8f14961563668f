package servers

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
)

const (
	dropbearPath    = "/usr/sbin/dropbear"
	dropbearKeyPath = "/usr/bin/dropbearkey"
	// dropbearSFTPServer is where Debian's dropbear runs the SFTP
	// subsystem from (compiled in); it links to OpenSSH's sftp-server.
	dropbearSFTPServer = "/usr/lib/sftp-server"
)

// authorizedKeysMu serialises edits of the login user's authorized_keys,
// which every dropbear server of this process shares.
var authorizedKeysMu sync.Mutex

// startDropbear runs dropbear in the foreground (-F -E) on 127.0.0.1 with a
// host key made by dropbearkey, password logins off (-s), root logins off
// (-w), no port forwarding (-j -k). dropbear reads the client's key only
// from ~/.ssh/authorized_keys: the key is added there, marked with the
// server's directory, and removed again by Close.
func startDropbear(dir string, o startOptions) (*Server, error) {
	if err := traversable(dir); err != nil {
		return nil, err
	}
	webRoot := filepath.Join(dir, "www")
	if err := mkdirOwned(webRoot); err != nil {
		return nil, err
	}
	hostKeyPath := filepath.Join(dir, "dropbear_ed25519_host_key")
	if out, err := exec.Command(dropbearKeyPath, "-t", "ed25519", "-f", hostKeyPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dropbearkey: %v: %s", err, out)
	}
	out, err := exec.Command(dropbearKeyPath, "-y", "-f", hostKeyPath).Output()
	if err != nil {
		return nil, fmt.Errorf("dropbearkey -y: %v", err)
	}
	var hostKey string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "ssh-ed25519 ") {
			f := strings.Fields(l)
			hostKey = f[0] + " " + f[1]
		}
	}
	if hostKey == "" {
		return nil, fmt.Errorf("dropbearkey -y printed no ssh-ed25519 key:\n%s", out)
	}
	marker := "prepcast-servers " + dir
	keyLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(o.clientPub))) + " " + marker
	if err := editAuthorizedKeys(func(lines []string) []string { return append(lines, keyLine) }); err != nil {
		return nil, err
	}
	removeKey := func() error {
		return editAuthorizedKeys(func(lines []string) []string {
			kept := lines[:0]
			for _, l := range lines {
				if !strings.HasSuffix(l, " "+marker) {
					kept = append(kept, l)
				}
			}
			return kept
		})
	}
	s := &Server{
		User:      LoginUser,
		ClientKey: o.clientKey,
		HostKey:   hostKey,
		Root:      webRoot,
		WebRoot:   webRoot,
		LogPath:   filepath.Join(dir, "dropbear.log"),
	}
	var d *daemon
	err = startWithPort(func(port int) (bool, error) {
		s.Addr = host + ":" + strconv.Itoa(port)
		var inUse bool
		d, inUse, err = startDaemon("dropbear", []string{dropbearPath, "-F", "-E", "-s", "-w", "-j", "-k",
			"-r", hostKeyPath, "-P", filepath.Join(dir, "dropbear.pid"), "-p", s.Addr}, s.LogPath, s.Addr)
		return inUse, err
	})
	if err != nil {
		_ = removeKey()
		return nil, err
	}
	if s.KnownHostsLine, err = knownHostsLine(s.Addr, s.HostKey); err != nil {
		_ = d.stop()
		_ = removeKey()
		return nil, err
	}
	s.close = func() error {
		err := d.stop()
		if kerr := removeKey(); err == nil {
			err = kerr
		}
		return err
	}
	return s, nil
}

// editAuthorizedKeys rewrites the login user's ~/.ssh/authorized_keys
// (created with the modes dropbear insists on) with edit's result.
func editAuthorizedKeys(edit func([]string) []string) error {
	authorizedKeysMu.Lock()
	defer authorizedKeysMu.Unlock()
	u, err := user.Lookup(LoginUser)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	home := u.HomeDir
	sshDir := filepath.Join(home, ".ssh")
	for _, d := range []string{home, sshDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chown(d, uid, gid); err != nil {
			return err
		}
	}
	// Another test process may edit the file at the same time.
	lock, err := os.OpenFile(filepath.Join(sshDir, ".prepcast-servers.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	path := filepath.Join(sshDir, "authorized_keys")
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var lines []string
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			lines = append(lines, string(l))
		}
	}
	lines = edit(lines)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Chown(tmp, uid, gid); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
