// Package background runs a function on a goroutine of its own and hands
// back a function that waits for its result: requests that do not depend
// on each other go out together, and each is waited for where its answer
// is needed.
package background

import "sync"

// Go runs f on a goroutine of its own and returns a function that waits
// for f's result, as many times as it is called.
func Go[T any](f func() T) func() T {
	done := make(chan T, 1)
	go func() { done <- f() }()
	return sync.OnceValue(func() T { return <-done })
}

// GoErr is Go for a function that also returns an error.
func GoErr[T any](f func() (T, error)) func() (T, error) {
	type result struct {
		v   T
		err error
	}
	wait := Go(func() result {
		v, err := f()
		return result{v, err}
	})
	return func() (T, error) {
		r := wait()
		return r.v, r.err
	}
}
