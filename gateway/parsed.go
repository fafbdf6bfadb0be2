package gateway

import (
	"container/list"
	"sync"

	goical "github.com/emersion/go-ical"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// parsedBudget bounds the memory of the parsed-object cache, estimated
// as parsedCost per object.
const parsedBudget = 32 << 20

// parsedCost estimates the memory of a parsed object from its size: a
// go-ical tree takes a few times its text.
func parsedCost(data []byte) int { return 4*len(data) + 512 }

// parsedCache keeps the parse of the objects a time-range query cannot
// decide from their headers (recurring sets, floating times), so that the
// calendar-query and expand of a busy calendar do not parse the same
// bytes on every request. Entries are keyed by ETag, a hash of the bytes:
// an entry can never be stale, and a changed object simply misses. The
// least recently used entries go first once the budget is spent.
//
// The parsed trees are shared between requests and must be treated as
// read-only: matching and expansion only read them (instanceComponent
// copies before changing).
type parsedCache struct {
	mu     sync.Mutex // protects the fields below
	byETag map[string]*list.Element
	lru    list.List // of *parsedEntry, most recent first
	cost   int
	budget int
}

type parsedEntry struct {
	etag string
	cal  *goical.Calendar
	cost int
}

func newParsedCache(budget int) *parsedCache {
	return &parsedCache{byETag: make(map[string]*list.Element), budget: budget}
}

// parse returns o's data parsed, from the cache when o has an ETag. Exact
// objects are parsed without being kept: their filters are answered from
// the header, so a parse of one is rare and would only crowd out the
// others.
func (c *parsedCache) parse(o *cache.Object) (*goical.Calendar, error) {
	if o.ETag == "" || o.Exact {
		return ical.Parse(o.Data)
	}
	c.mu.Lock()
	if el, ok := c.byETag[o.ETag]; ok {
		c.lru.MoveToFront(el)
		cal := el.Value.(*parsedEntry).cal
		c.mu.Unlock()
		return cal, nil
	}
	c.mu.Unlock()
	cal, err := ical.Parse(o.Data)
	if err != nil {
		return nil, err
	}
	e := &parsedEntry{etag: o.ETag, cal: cal, cost: parsedCost(o.Data)}
	if e.cost > c.budget/4 {
		return cal, nil // one huge object does not take over the cache
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byETag[o.ETag]; ok {
		return cal, nil // parsed meanwhile by another request
	}
	c.byETag[o.ETag] = c.lru.PushFront(e)
	c.cost += e.cost
	for c.cost > c.budget {
		last := c.lru.Back()
		old := last.Value.(*parsedEntry)
		c.lru.Remove(last)
		delete(c.byETag, old.etag)
		c.cost -= old.cost
	}
	return cal, nil
}

// len returns the number of cached parses.
func (c *parsedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
