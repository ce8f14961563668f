package servers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/prepcast/prepcast/integration/sshdtest"
)

// Paths of the programs run as sshd's SFTP subsystem.
const (
	openSSHSFTPServer = "/usr/lib/openssh/sftp-server"
	gesftpserverPath  = "/usr/libexec/gesftpserver"
	mysecureshellPath = "/usr/bin/mysecureshell"
	unsharePath       = "/usr/bin/unshare"
	// mysecureshellConfig is the only configuration file MySecureShell 2.0
	// reads (before /etc/sshd/sftp_config); it has no option to name
	// another one.
	mysecureshellConfig = "/etc/ssh/sftp_config"
)

// startOpenSSH returns a start function for an sshdtest server with opts,
// logging in LoginUser.
func startOpenSSH(opts sshdtest.Options) func(string, startOptions) (*Server, error) {
	return func(dir string, o startOptions) (*Server, error) {
		opts.User = LoginUser
		opts.ClientKey = o.clientKey
		return fromSSHD(sshdtest.StartServer(filepath.Join(dir, "sshd"), opts))
	}
}

func fromSSHD(s *sshdtest.Server, err error) (*Server, error) {
	if err != nil {
		return nil, err
	}
	return &Server{
		Addr:           s.Addr(),
		User:           s.User(),
		ClientKey:      s.ClientKeyPath(),
		HostKey:        s.HostKeyLine(),
		KnownHostsLine: s.KnownHostsLine(),
		Root:           s.Root(),
		WebRoot:        s.WebRoot(),
		LogPath:        s.LogPath(),
		close:          s.Close,
	}, nil
}

// startMySecureShell runs MySecureShell as sshd's SFTP subsystem with a
// configuration of its own. MySecureShell reads only /etc/ssh/sftp_config,
// so sshd runs in a private mount namespace (unshare(1)) in which that path
// is a bind mount of the server's own file: the system's file is never
// changed, and other processes keep seeing it. The namespace has its own
// System V IPC too: MySecureShell counts sessions for
// LimitConnectionByUser in shared memory, which would otherwise be one
// count for every MySecureShell on the machine (tests running at once
// refused each other's logins).
func startMySecureShell(dir string, o startOptions) (*Server, error) {
	site := filepath.Join(dir, "site")
	if err := os.MkdirAll(site, 0o755); err != nil {
		return nil, err
	}
	if err := traversable(dir); err != nil {
		return nil, err
	}
	if err := mkdirOwned(filepath.Join(site, "www")); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "mysecureshell.log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		return nil, err
	}
	if uid, gid, err := loginOwner(); err != nil {
		return nil, err
	} else if err := os.Chown(logPath, uid, gid); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "sftp_config")
	// Debian's /etc/ssh/sftp_config as shipped, with Home set to the site
	// and the log in the server's directory.
	conf := fmt.Sprintf(`<Default>
	GlobalDownload		50k
	GlobalUpload		0
	Download		5k
	Upload			0
	StayAtHome		true
	VirtualChroot		true
	LimitConnection		10
	LimitConnectionByUser	1
	LimitConnectionByIP	2
	Home			%s
	IdleTimeOut		5m
	ResolveIP		true
	HideNoAccess		true
	DefaultRights		0640 0750
	ShowLinksAsLinks	false
	LogFile			%s
</Default>
`, site, logPath)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	releaseMySecureShellSlots()
	wrap := []string{unsharePath, "--mount", "--ipc", "--propagation", "private", "--",
		"/bin/sh", "-c", `mount --bind "$0" ` + mysecureshellConfig + ` && exec "$@"`, cfg}
	s, err := fromSSHD(sshdtest.StartServer(filepath.Join(dir, "sshd"), sshdtest.Options{
		User:        LoginUser,
		ClientKey:   o.clientKey,
		Wrap:        wrap,
		ExtraConfig: []string{"Subsystem sftp " + mysecureshellPath + " -c sftp-server"},
	}))
	if err != nil {
		return nil, err
	}
	s.Root = "/www"
	s.WebRoot = filepath.Join(site, "www")
	s.LogPath = logPath // sshd's own log is next to its sshd_config
	stop := s.close
	s.close = func() error {
		err := stop()
		releaseMySecureShellSlots()
		return err
	}
	return s, nil
}

// releaseMySecureShellSlots removes MySecureShell's shared memory segment
// (created by the first session, owned by the login user) when no process
// has it attached. MySecureShell counts every session in it for
// LimitConnectionByUser and releases a session's slot only when the session
// ends by itself: a session killed with its server (as Close does) would
// hold its slot for good and make the next server refuse every login.
func releaseMySecureShellSlots() {
	uid, _, err := loginOwner()
	if err != nil {
		return
	}
	data, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(data), "\n")[1:] {
		// key shmid perms size cpid lpid nattch uid gid cuid ...
		f := strings.Fields(l)
		if len(f) < 10 || f[6] != "0" || f[9] != strconv.Itoa(uid) {
			continue
		}
		if id, err := strconv.Atoi(f[1]); err == nil {
			const ipcRMID = 0
			_, _, _ = syscall.Syscall(syscall.SYS_SHMCTL, uintptr(id), ipcRMID, 0)
		}
	}
}
