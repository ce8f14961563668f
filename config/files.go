package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// CheckFiles checks the filesystem against c: source is a readable
// directory; state_dir is a directory or can be created (its parent is a
// directory); signing_key, and the identity_file and known_hosts of every
// enabled target, are readable regular files; the log file's directory
// exists unless it is state_dir. An identity_file readable by its group or
// by others is refused, as ssh refuses it. It also repeats, with symbolic links
// resolved, the checks that keep the store and every key out of the results
// tree. It returns the errors.Join of a [*FieldError] per problem, or nil.
func (c *Config) CheckFiles() error {
	var e collector
	if c.Source != "" {
		checkDir(&e, "source", c.Source, "set source to the directory the PREP generator writes, or pass --source")
	}
	if c.StateDir != "" {
		fi, err := os.Stat(c.StateDir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			checkDir(&e, "state_dir", filepath.Dir(c.StateDir), "create it; prepcast creates state_dir itself, but not its parents")
		case err != nil:
			e.add("state_dir", "%v; make it accessible to the user prepcast runs as", err)
		case !fi.IsDir():
			e.add("state_dir", "%s is not a directory; point state_dir at a directory, e.g. /var/lib/prepcast", c.StateDir)
		}
	}
	if c.SigningKey != "" {
		checkFile(&e, "signing_key", c.SigningKey, `run "prepcast keygen --out DIR" and set signing_key to the private key it writes`)
	}
	if c.Log.File != "" && filepath.Dir(c.Log.File) != c.StateDir {
		checkDir(&e, "log.file", filepath.Dir(c.Log.File), "create the directory or choose another log file")
	}
	for i := range c.Targets {
		t := &c.Targets[i]
		if t.Disabled {
			continue
		}
		f := func(name string) string { return fmt.Sprintf("targets[%d].%s", i, name) }
		if t.IdentityFile != "" {
			checkFile(&e, f("identity_file"), t.IdentityFile, fmt.Sprintf(
				"create a key with \"ssh-keygen -t ed25519 -f %s\" and install %s.pub for user %s on the difusor, or remove identity_file to use ssh-agent",
				t.IdentityFile, t.IdentityFile, t.User))
			checkPrivate(&e, f("identity_file"), t.IdentityFile)
		}
		if t.Logo != "" {
			if err := CheckLogo(t.Logo); err != nil {
				e.add(f("logo"), "%v", err)
			}
		}
		if t.KnownHosts != "" {
			host, port := t.Address, DefaultPort
			if h, p, err := net.SplitHostPort(t.Address); err == nil {
				host, port = h, p
			}
			checkFile(&e, f("known_hosts"), t.KnownHosts, fmt.Sprintf(
				"run \"ssh-keyscan -p %s %s >> %s\" and check the fingerprint with the difusor, or set host_key",
				port, host, t.KnownHosts))
		}
	}
	c.checkResolved(&e)
	return e.err()
}

// checkResolved repeats the overlap checks of Validate with symbolic links
// resolved, for paths that exist.
func (c *Config) checkResolved(e *collector) {
	if c.Source == "" || e.has("source") {
		return
	}
	src, err := filepath.EvalSymlinks(c.Source)
	if err != nil {
		return
	}
	if st := resolveMaybeMissing(c.StateDir); st != "" && !e.has("state_dir") {
		switch {
		case within(st, src):
			e.add("state_dir", "%s resolves to %s, inside source %s (%s); move it outside the results tree, e.g. /var/lib/prepcast", c.StateDir, st, c.Source, src)
		case within(src, st):
			e.add("source", "%s resolves to %s, inside state_dir %s (%s); point source at the directory the PREP generator writes", c.Source, src, c.StateDir, st)
		}
	}
	secret := func(field, p string) {
		if p == "" || e.has(field) {
			return
		}
		if r, err := filepath.EvalSymlinks(p); err == nil && within(r, src) {
			e.add(field, "%s resolves to %s, inside source %s (%s), so it would be published to every difusor; move it out of the results tree", p, r, c.Source, src)
		}
	}
	secret("signing_key", c.SigningKey)
	if lf := resolveMaybeMissing(c.Log.File); lf != "" && within(lf, src) && !e.has("log.file") {
		e.add("log.file", "%s resolves to %s, inside source %s (%s), so the log would be published; put it elsewhere", c.Log.File, lf, c.Source, src)
	}
	for i := range c.Targets {
		if t := &c.Targets[i]; !t.Disabled {
			secret(fmt.Sprintf("targets[%d].identity_file", i), t.IdentityFile)
			secret(fmt.Sprintf("targets[%d].known_hosts", i), t.KnownHosts)
		}
	}
}

// resolveMaybeMissing resolves symbolic links in p, or in its parent when p
// does not exist yet. It returns "" when neither can be resolved.
func resolveMaybeMissing(p string) string {
	if p == "" {
		return ""
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	if r, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		return filepath.Join(r, filepath.Base(p))
	}
	return ""
}

// checkDir reports dir unless it is a directory that can be listed.
func checkDir(e *collector, field, dir, hint string) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.add(field, "directory %s does not exist; %s", dir, hint)
		return
	case err != nil:
		e.add(field, "%v; make it accessible to the user prepcast runs as", err)
		return
	case !fi.IsDir():
		e.add(field, "%s is not a directory; %s", dir, hint)
		return
	}
	f, err := os.Open(dir)
	if err == nil {
		_, err = f.Readdirnames(1)
		f.Close()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		e.add(field, "cannot read directory %s: %v; make it readable by the user prepcast runs as", dir, err)
	}
}

// checkFile reports p unless it is a regular file that can be opened for
// reading.
func checkFile(e *collector, field, p, hint string) {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.add(field, "file %s does not exist; %s", p, hint)
		return
	case err != nil:
		e.add(field, "%v; make it accessible to the user prepcast runs as", err)
		return
	case fi.IsDir():
		e.add(field, "%s is a directory, not a file; %s", p, hint)
		return
	case !fi.Mode().IsRegular():
		e.add(field, "%s is not a regular file; %s", p, hint)
		return
	}
	f, err := os.Open(p)
	if err != nil {
		e.add(field, "cannot read %s: %v; make it readable by the user prepcast runs as", p, err)
		return
	}
	f.Close()
}

// checkPrivate reports a private key file that its group or others may
// read or write, as ssh does ("UNPROTECTED PRIVATE KEY FILE"), with the
// command that fixes it. A missing file is left to checkFile.
func checkPrivate(e *collector, field, p string) {
	if e.has(field) {
		return
	}
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		e.add(field, "private key %s is accessible by its group or by others (mode %04o); run \"chmod 600 %s\" (ssh refuses such a key too)", p, perm, p)
	}
}
