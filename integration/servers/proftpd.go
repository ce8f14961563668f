package servers

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/prepcast/prepcast/integration/sshdtest"
)

const (
	proftpdPath       = "/usr/sbin/proftpd"
	proftpdModules    = "/usr/lib/proftpd"
	proftpdSFTPModule = proftpdModules + "/mod_sftp.so"
)

// startProFTPD returns a start function for ProFTPD with mod_sftp, run in
// the foreground (-n) with a configuration of its own: SFTP only, on
// 127.0.0.1, the login user chrooted (DefaultRoot) to a directory holding
// the webroot "/www", public key authentication only. extra lines go at
// the end of the configuration.
func startProFTPD(extra []string) func(string, startOptions) (*Server, error) {
	return func(dir string, o startOptions) (*Server, error) {
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
		hostKeyPath := filepath.Join(dir, "ssh_host_ed25519_key")
		hostPub, err := sshdtest.GenerateKey(hostKeyPath)
		if err != nil {
			return nil, err
		}
		// SFTPAuthorizedUserKeys reads RFC 4716 public keys, one file per
		// user (%u).
		keysDir := filepath.Join(dir, "authorized_keys")
		if err := os.MkdirAll(keysDir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(keysDir, LoginUser), rfc4716(o.clientPub), 0o644); err != nil {
			return nil, err
		}
		s := &Server{
			User:      LoginUser,
			ClientKey: o.clientKey,
			HostKey:   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub))),
			Root:      "/www",
			WebRoot:   filepath.Join(site, "www"),
			LogPath:   filepath.Join(dir, "proftpd.log"),
		}
		cfg := filepath.Join(dir, "proftpd.conf")
		var d *daemon
		err = startWithPort(func(port int) (bool, error) {
			s.Addr = host + ":" + strconv.Itoa(port)
			conf := proftpdConfig(dir, port, hostKeyPath, keysDir, site, s.LogPath, extra)
			if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
				return false, err
			}
			var inUse bool
			d, inUse, err = startDaemon("proftpd", []string{proftpdPath, "-n", "-q", "-c", cfg}, s.LogPath, s.Addr)
			return inUse, err
		})
		if err != nil {
			return nil, err
		}
		if s.KnownHostsLine, err = knownHostsLine(s.Addr, s.HostKey); err != nil {
			_ = d.stop()
			return nil, err
		}
		s.close = d.stop
		return s, nil
	}
}

func proftpdConfig(dir string, port int, hostKey, keysDir, site, logPath string, extra []string) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# prepcast servers: ProFTPD mod_sftp on 127.0.0.1:%d", port)
	line("ServerName \"prepcast difusor\"")
	line("ServerType standalone")
	line("DefaultServer on")
	line("UseIPv6 off")
	line("DefaultAddress %s", host)
	line("SocketBindTight on")
	line("Port %d", port)
	line("User nobody")
	line("Group nogroup")
	line("PidFile %s", filepath.Join(dir, "proftpd.pid"))
	line("ScoreboardFile %s", filepath.Join(dir, "proftpd.scoreboard"))
	line("DelayTable none")
	line("WtmpLog off")
	line("UseReverseDNS off")
	line("SystemLog %s", logPath)
	line("TransferLog none")
	line("MaxInstances 100")
	line("RequireValidShell off")
	line("AuthPAM off")
	line("AuthOrder mod_auth_unix.c")
	line("<IfModule mod_ctrls.c>")
	line("  ControlsEngine off")
	line("</IfModule>")
	line("ModulePath %s", proftpdModules)
	line("LoadModule mod_sftp.c")
	line("SFTPEngine on")
	line("SFTPLog %s", logPath)
	line("SFTPHostKey %s", hostKey)
	line("SFTPAuthorizedUserKeys file:%s/%%u", keysDir)
	line("SFTPAuthMethods publickey")
	line("DefaultRoot %s", site)
	line("<Limit LOGIN>")
	line("  AllowUser %s", LoginUser)
	line("  DenyAll")
	line("</Limit>")
	for _, l := range extra {
		line("%s", l)
	}
	return b.String()
}

// rfc4716 returns pub in the RFC 4716 format ("---- BEGIN SSH2 PUBLIC KEY
// ----") that ssh-keygen -e writes.
func rfc4716(pub ssh.PublicKey) []byte {
	enc := base64.StdEncoding.EncodeToString(pub.Marshal())
	var b strings.Builder
	b.WriteString("---- BEGIN SSH2 PUBLIC KEY ----\n")
	for len(enc) > 70 {
		b.WriteString(enc[:70] + "\n")
		enc = enc[70:]
	}
	b.WriteString(enc + "\n---- END SSH2 PUBLIC KEY ----\n")
	return []byte(b.String())
}
