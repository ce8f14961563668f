package config

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError is one problem with one field of the config. Field is the
// field's path as written in YAML, such as "schedule.every" or
// "targets[2].known_hosts"; Msg says what is wrong and what to do about it.
type FieldError struct {
	Field string
	Msg   string
}

// Error returns "<field>: <msg>".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// FieldErrors returns every [*FieldError] in err's tree (as returned by
// [Parse], [Load], [Config.Validate] or [Config.CheckFiles]), in order.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *FieldError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, c := range e.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// Error is returned by [Load] and [Read] for a config file that cannot be
// used. Err is a syntax error or the errors.Join of every [*FieldError]
// found, so that an operator can fix the whole file in one go.
type Error struct {
	Path string // the config file
	Err  error
}

// Error returns the file name followed by one problem per line.
func (e *Error) Error() string {
	fes := FieldErrors(e.Err)
	if len(fes) <= 1 {
		return fmt.Sprintf("config %s: %v", e.Path, e.Err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "config %s: %d problems:", e.Path, len(fes))
	for _, line := range strings.Split(e.Err.Error(), "\n") {
		b.WriteString("\n  ")
		b.WriteString(line)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// collector gathers field errors, at most one per field: a field that is
// already reported (say, unparsable) is not reported again by a later check,
// and neither is anything inside it ("schedule" hides "schedule.every",
// "targets[1]" hides "targets[1].name").
type collector struct {
	errs []error
	seen map[string]bool
}

func (c *collector) add(field, format string, args ...any) {
	if c.has(field) {
		return
	}
	if c.seen == nil {
		c.seen = make(map[string]bool)
	}
	c.seen[field] = true
	c.errs = append(c.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// hide suppresses later errors for field and anything inside it.
func (c *collector) hide(field string) {
	if c.seen == nil {
		c.seen = make(map[string]bool)
	}
	c.seen[field] = true
}

// has reports whether field or a field containing it has been reported.
func (c *collector) has(field string) bool {
	if c.seen[field] {
		return true
	}
	for i := range len(field) {
		if (field[i] == '.' || field[i] == '[') && c.seen[field[:i]] {
			return true
		}
	}
	return false
}

func (c *collector) len() int { return len(c.errs) }

func (c *collector) err() error { return errors.Join(c.errs...) }
