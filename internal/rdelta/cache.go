package rdelta

import (
	"container/list"
	"sync"
)

// Key names a plan: the SHA-256 (hex) of the old and of the new content.
type Key struct{ Old, New string }

// Cache holds plans by the contents they join, so that a plan is computed
// once per pair of versions however many receivers hold the old one. Its
// methods are safe for concurrent use; callers asking for a plan that is
// being computed wait for that computation instead of starting their own.
// It keeps the most recently used plans up to a total number of ops.
type Cache struct {
	maxOps int

	mu      sync.Mutex
	entries map[Key]*cacheEntry
	lru     list.List // of *cacheEntry, most recently used first
	ops     int       // ops held by completed entries
	// Computed counts the plans computed (not served from the cache).
	computed int
}

type cacheEntry struct {
	key  Key
	done chan struct{} // closed when plan and err are set
	plan *Plan
	err  error
	elem *list.Element // nil while computing or once evicted
}

// NewCache returns a cache holding at most maxOps ops in total (each op
// costs 32 bytes); maxOps <= 0 means 1<<20 (about 32 MiB).
func NewCache(maxOps int) *Cache {
	if maxOps <= 0 {
		maxOps = 1 << 20
	}
	return &Cache{maxOps: maxOps, entries: map[Key]*cacheEntry{}}
}

// Get returns the plan for k, calling compute to make it when the cache
// does not hold it and nobody is computing it. An error of compute is
// returned to every caller waiting for it and is not cached.
func (c *Cache) Get(k Key, compute func() (*Plan, error)) (*Plan, error) {
	c.mu.Lock()
	if e, ok := c.entries[k]; ok {
		if e.elem != nil {
			c.lru.MoveToFront(e.elem)
		}
		c.mu.Unlock()
		<-e.done
		return e.plan, e.err
	}
	e := &cacheEntry{key: k, done: make(chan struct{})}
	c.entries[k] = e
	c.computed++
	c.mu.Unlock()

	plan, err := func() (p *Plan, err error) {
		defer func() {
			if v := recover(); v != nil {
				e.err = errPanic
				close(e.done)
				c.mu.Lock()
				delete(c.entries, k)
				c.mu.Unlock()
				panic(v)
			}
		}()
		return compute()
	}()
	e.plan, e.err = plan, err
	close(e.done)

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil || plan == nil || len(plan.Ops) > c.maxOps {
		delete(c.entries, k)
		return plan, err
	}
	e.elem = c.lru.PushFront(e)
	c.ops += len(plan.Ops)
	for c.ops > c.maxOps {
		last := c.lru.Back()
		old := last.Value.(*cacheEntry)
		c.lru.Remove(last)
		old.elem = nil
		delete(c.entries, old.key)
		c.ops -= len(old.plan.Ops)
	}
	return plan, nil
}

// Computed returns how many plans the cache has computed so far.
func (c *Cache) Computed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.computed
}

type panicError struct{}

func (panicError) Error() string { return "rdelta: plan computation panicked" }

var errPanic error = panicError{}
