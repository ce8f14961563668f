package main

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/prepcast/prepcast/integration/sshdtest"
)

// peer is a tool prepcast push is compared with.
type peer struct {
	name        string   // as -peers names it
	label       string   // as the table names it
	needs       []string // executables it runs
	incremental bool     // also measured in the incremental scenario
	writes      bool     // leaves the tree on the target (checked after each run)
	// cmd returns the command that copies tree into s's webroot.
	cmd func(o *options, s *sshdtest.Server, tree string) *exec.Cmd
}

// allPeers are the peers in the order they run within a round.
var allPeers = []*peer{
	{
		name: "rsync", label: "rsync -a", needs: []string{"rsync", "ssh"}, incremental: true, writes: true,
		cmd: func(o *options, s *sshdtest.Server, tree string) *exec.Cmd { return rsyncCmd(o, s, tree, false) },
	},
	{
		name: "rsync-W", label: "rsync -a -W", needs: []string{"rsync", "ssh"}, incremental: true, writes: true,
		cmd: func(o *options, s *sshdtest.Server, tree string) *exec.Cmd { return rsyncCmd(o, s, tree, true) },
	},
	{
		name: "rclone", label: "rclone copy --transfers 8 --sftp-disable-hashcheck", needs: []string{"rclone"}, incremental: true, writes: true,
		cmd: rcloneCmd,
	},
	{
		name: "lftp", label: "lftp mirror -R --parallel=8", needs: []string{"lftp", "ssh"}, incremental: true, writes: true,
		cmd: lftpCmd,
	},
	{
		name: "raw", label: "raw ssh channel: tar into cat > /dev/null", needs: []string{"bash", "tar", "ssh"},
		cmd: rawCmd,
	},
}

func findPeer(name string) *peer {
	for _, p := range allPeers {
		if p.name == name {
			return p
		}
	}
	return nil
}

func peerNames() []string {
	var names []string
	for _, p := range allPeers {
		names = append(names, p.name)
	}
	return names
}

// missing returns the first executable p needs that is not installed, or "".
func (p *peer) missing() string {
	for _, n := range p.needs {
		if _, err := exec.LookPath(n); err != nil {
			return n
		}
	}
	return ""
}

// sshArgs is the OpenSSH client command line for s with the benchmark's
// cipher, up to the destination.
func sshArgs(o *options, s *sshdtest.Server) []string {
	return append(s.SSHArgs(), "-c", o.cipher)
}

func rsyncCmd(o *options, s *sshdtest.Server, tree string, wholeFile bool) *exec.Cmd {
	args := []string{"-a", "-e", strings.Join(sshArgs(o, s), " ")}
	if wholeFile {
		args = append(args, "-W")
	}
	args = append(args, tree+"/", s.User()+"@127.0.0.1:"+s.Root()+"/")
	return exec.Command("rsync", args...)
}

// rcloneCmd configures an sftp remote on the command line: the client key,
// the server's host key pinned through its known_hosts file, and no remote
// hashing (rclone's fastest settings against a plain sftp server). rclone
// offers no cipher option; the server accepts only the benchmark's cipher.
func rcloneCmd(o *options, s *sshdtest.Server, tree string) *exec.Cmd {
	return exec.Command("rclone", "copy", "-q", "--config", o.rcloneConf,
		"--transfers", "8", "--sftp-disable-hashcheck",
		"--sftp-host", "127.0.0.1", "--sftp-port", strconv.Itoa(s.Port()), "--sftp-user", s.User(),
		"--sftp-key-file", s.ClientKeyPath(), "--sftp-known-hosts-file", s.KnownHostsFile(),
		tree, ":sftp:"+s.Root())
}

// lftpCmd runs lftp's sftp through the OpenSSH client with the server's
// host key pinned and the client key.
func lftpCmd(o *options, s *sshdtest.Server, tree string) *exec.Cmd {
	script := fmt.Sprintf(`set cmd:fail-exit yes; set net:max-retries 1; set sftp:connect-program "%s"; `+
		`open -u %s, -p %d sftp://127.0.0.1; mirror -R --parallel=8 %s %s`,
		strings.Join(sshArgs(o, s), " "), s.User(), s.Port(), tree, s.Root())
	return exec.Command("lftp", "-c", script)
}

// rawCmd sends a tar of the tree through one ssh channel into
// "cat > /dev/null": the channel's throughput with nothing written.
func rawCmd(o *options, s *sshdtest.Server, tree string) *exec.Cmd {
	argv := append(sshArgs(o, s), "--", s.User()+"@127.0.0.1", "cat > /dev/null")
	return exec.Command("bash", append([]string{"-o", "pipefail", "-c", `src=$1; shift; tar -cf - -C "$src" . | "$@"`, "bash", tree}, argv...)...)
}
