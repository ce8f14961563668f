// Package safepath validates the relative paths that name files in a results
// tree, a manifest or a target, so that no name can reach outside its root.
package safepath

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the longest relative path accepted, in bytes.
const MaxLen = 1024

// Reserved is the top-level directory that prepcast keeps for itself on every
// target (acknowledgements, staging). A results tree may not use it.
const Reserved = ".prepcast"

// PublicReserved is the directory that prepcast keeps for the public proof of
// each cut (signed manifests and their index, RFC 8615 well-known URIs). Unlike
// [Reserved] it is served by the difusor's web server. A results tree may not
// use it; other names below ".well-known/" stay free.
const PublicReserved = ".well-known/prepcast"

// ErrInvalid is wrapped by every error [Check] returns.
var ErrInvalid = errors.New("invalid path")

// Check reports whether rel is a clean, slash-separated path relative to a
// root: not empty, not absolute, no "." or ".." or empty element, no
// backslash, valid UTF-8 without control characters, at most [MaxLen] bytes,
// a name every difusor's system can store (none of Windows' reserved
// characters or device names, no element ending in a dot or a space), and
// not inside [Reserved]. A path that passes cannot name anything outside
// the root it is joined to.
func Check(rel string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalid, rel, why) }
	switch {
	case rel == "":
		return bad("empty name")
	case len(rel) > MaxLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxLen))
	case !utf8.ValidString(rel):
		return bad("not valid UTF-8")
	case strings.HasPrefix(rel, "/"):
		return bad("absolute path")
	case strings.ContainsRune(rel, '\\'):
		return bad("contains a backslash")
	}
	for _, r := range rel {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return bad("contains a control character")
		}
	}
	for _, el := range strings.Split(rel, "/") {
		switch el {
		case "":
			return bad("empty path element (double or trailing slash)")
		case ".", "..":
			return bad(fmt.Sprintf("contains %q", el))
		}
		if why := windowsProblem(el); why != "" {
			return bad(why + "; difusores may run Windows, which cannot store that name: rename it in the results tree")
		}
	}
	if path.Clean(rel) != rel {
		return bad("not in clean form")
	}
	if rel == Reserved || strings.HasPrefix(rel, Reserved+"/") {
		return bad("inside " + Reserved + "/, which prepcast reserves on targets")
	}
	if rel == PublicReserved || strings.HasPrefix(rel, PublicReserved+"/") {
		return bad("inside " + PublicReserved + "/, which prepcast reserves for the published proof of each cut")
	}
	return nil
}

// CheckInternal is like [Check] but also accepts paths inside [Reserved] and
// [PublicReserved]; it is for prepcast's own files on a target.
func CheckInternal(rel string) error {
	if rel == Reserved || rel == PublicReserved {
		return nil
	}
	if strings.HasPrefix(rel, PublicReserved+"/") {
		if err := Check("x" + rel[len(PublicReserved):]); err != nil {
			return fmt.Errorf("%w %q", ErrInvalid, rel)
		}
		return nil
	}
	if strings.HasPrefix(rel, Reserved+"/") {
		if err := Check("x" + rel[len(Reserved):]); err != nil {
			return fmt.Errorf("%w %q", ErrInvalid, rel)
		}
		return nil
	}
	return Check(rel)
}

// windowsReserved are the device names Windows reserves in every directory,
// with any extension ("nul.json" too), in any case.
var windowsReserved = map[string]bool{"CON": true, "PRN": true, "AUX": true, "NUL": true,
	"COM1": true, "COM2": true, "COM3": true, "COM4": true, "COM5": true, "COM6": true, "COM7": true, "COM8": true, "COM9": true,
	"LPT1": true, "LPT2": true, "LPT3": true, "LPT4": true, "LPT5": true, "LPT6": true, "LPT7": true, "LPT8": true, "LPT9": true}

// windowsProblem says why Windows cannot store a path element el, or "".
// A colon would even name an alternate data stream of another file.
func windowsProblem(el string) string {
	if i := strings.IndexAny(el, `:*?"<>|`); i >= 0 {
		return fmt.Sprintf("contains %q", el[i])
	}
	if strings.HasSuffix(el, ".") || strings.HasSuffix(el, " ") {
		return fmt.Sprintf("element %q ends in a dot or a space", el)
	}
	base, _, _ := strings.Cut(el, ".")
	if windowsReserved[strings.ToUpper(strings.TrimRight(base, " "))] {
		return fmt.Sprintf("element %q is a device name on Windows", el)
	}
	return ""
}
