package redisroutes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/portier/portier/balancer"
)

// ErrNotFound is returned by Remove when the route or backend is not there.
var ErrNotFound = errors.New("not found")

const (
	scanCount = 1000 // SCAN COUNT hint
	batchSize = 1000 // commands per pipeline
	// readers is the number of pages of keys read at once during a full
	// sync (redisload, 1M keys: see docs/design.md).
	readers = 3
)

// nodes returns the clients that hold a share of the keyspace: every master
// of a Cluster (SCAN and keyspace notifications are per node there), else c.
func nodes(ctx context.Context, c redis.UniversalClient) ([]redis.UniversalClient, error) {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return []redis.UniversalClient{c}, nil
	}
	var (
		mu  sync.Mutex
		out []redis.UniversalClient
	)
	err := cc.ForEachMaster(ctx, func(_ context.Context, n *redis.Client) error {
		mu.Lock()
		out = append(out, n)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis: cluster masters: %w", err)
	}
	return out, nil
}

// scanKeys calls fn with each page of keys matching pattern, on every node.
// A key may be seen twice (SCAN guarantees at least once).
func scanKeys(ctx context.Context, ns []redis.UniversalClient, pattern string, fn func(keys []string) error) error {
	for _, n := range ns {
		var cursor uint64
		for {
			keys, next, err := n.Scan(ctx, cursor, pattern, scanCount).Result()
			if err != nil {
				return fmt.Errorf("redis: scan %s: %w", pattern, err)
			}
			if len(keys) > 0 {
				if err := fn(keys); err != nil {
					return err
				}
			}
			cursor = next
			if cursor == 0 {
				break
			}
		}
	}
	return nil
}

// isReplyError tells a reply of the server about one key (WRONGTYPE) from a
// failure to talk to it.
func isReplyError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}

// readKeys reads keys in pipelines and calls fn for each: vals is empty for
// a key that does not exist, rerr is the server's reply error for that key
// (a key of the wrong type). A connection failure aborts with an error.
func readKeys(ctx context.Context, c redis.UniversalClient, sc schema, keys []string, fn func(key string, vals []string, rerr error)) error {
	cmds := make([]*redis.StringSliceCmd, 0, min(len(keys), batchSize))
	for start := 0; start < len(keys); start += batchSize {
		batch := keys[start:min(start+batchSize, len(keys))]
		pipe := c.Pipeline()
		cmds = cmds[:0]
		for _, k := range batch {
			if sc == sets {
				cmds = append(cmds, pipe.SMembers(ctx, k))
			} else {
				cmds = append(cmds, pipe.LRange(ctx, k, 0, -1))
			}
		}
		// Exec's error is the first command's; each is inspected below.
		_, _ = pipe.Exec(ctx)
		for i, cmd := range cmds {
			vals, err := cmd.Result()
			if err != nil && !isReplyError(err) {
				return fmt.Errorf("redis: read %s: %w", batch[i], err)
			}
			fn(batch[i], vals, err)
		}
	}
	return nil
}

// interpret turns the result of reading key into an entry, or a problem.
// exists is false for a key that is gone.
func interpret(sc schema, key string, vals []string, rerr error) (e entry, problem string, ok, exists bool) {
	if rerr != nil {
		if strings.HasPrefix(rerr.Error(), "WRONGTYPE") {
			want := "list"
			if sc == sets {
				want = "set"
			}
			return entry{}, "wrong key type (want a " + want + ")", false, true
		}
		return entry{}, rerr.Error(), false, true
	}
	if len(vals) == 0 {
		return entry{}, "", false, false
	}
	e, problem, ok = sc.parse(key, vals)
	return e, problem, ok, true
}

// collector streams the keys of a full sync into a RouteSetBuilder: no
// copy of every key or route is kept besides the set itself. A route that
// more than one key contributes to (another spelling of the name, the two
// catch-all keys of the sets schema) is kept per key in multi and merged
// at the end; every other key is its route.
type collector struct {
	sc       schema
	b        *balancer.RouteSetBuilder
	multi    map[string]map[string][]string // name -> key -> backends
	problems map[string]string              // by key: why it was skipped in full or in part
	err      error
}

func newCollector(sc schema, sizeHint int) *collector {
	return &collector{sc: sc, b: balancer.NewRouteSetBuilder(sizeHint),
		multi: make(map[string]map[string][]string), problems: make(map[string]string)}
}

// keyResult is one key read and interpreted (see interpret): readers
// decode in parallel, the collector only files the results.
type keyResult struct {
	key     string
	e       entry
	problem string
	ok      bool
}

func decode(sc schema, key string, vals []string, rerr error) keyResult {
	e, problem, ok, _ := interpret(sc, key, vals, rerr)
	return keyResult{key: key, e: e, problem: problem, ok: ok}
}

// key takes the result of reading one key.
func (c *collector) key(key string, vals []string, rerr error) {
	c.add(decode(c.sc, key, vals, rerr))
}

// add files one decoded key.
func (c *collector) add(kr keyResult) {
	key, e := kr.key, kr.e
	if kr.problem != "" {
		c.problems[key] = kr.problem
	}
	if !kr.ok || c.err != nil {
		return
	}
	if m := c.multi[e.name]; m != nil || key != c.sc.key(e.name) {
		if m == nil {
			m = make(map[string][]string)
			if r, ok := c.b.Get(e.name); ok {
				m[c.sc.key(e.name)] = r.Backends
			}
			c.multi[e.name] = m
		}
		m[key] = e.backends
		return
	}
	c.err = c.b.Set(balancer.RouteSpec{Name: e.name, Backends: e.backends})
}

// found reports whether a route named name was read.
func (c *collector) found(name string) bool {
	if c.multi[name] != nil {
		return true
	}
	_, ok := c.b.Get(name)
	return ok
}

// done merges the routes of several keys and returns the set.
func (c *collector) done() (*balancer.RouteSet, error) {
	for name, m := range c.multi {
		r, ok := merge(name, m)
		if !ok {
			continue // only ALPN keys: no route until its own list exists
		}
		if err := c.b.Set(r); err != nil {
			return nil, err
		}
	}
	if c.err != nil {
		return nil, c.err
	}
	return c.b.Done(), nil
}

// loadAll reads every route key (SCAN, then pipelined reads of each page of
// keys) into a RouteSet. multi holds the routes with more than one key, by
// key; problems maps keys skipped in full or in part to a one-line
// description. sizeHint is the expected number of routes.
//
// recheck, if set, is called once SCAN is done with a function that tells
// whether a route was found; it returns keys to read again directly (see
// Source.missingKeys).
func loadAll(ctx context.Context, c redis.UniversalClient, sc schema, sizeHint int,
	recheck func(found func(name string) bool) []string) (set *balancer.RouteSet, multi map[string]map[string][]string, problems map[string]string, err error) {
	ns, err := nodes(ctx, c)
	if err != nil {
		return nil, nil, nil, err
	}
	col := newCollector(sc, sizeHint)
	// One goroutine scans, readers pipeline the reads of whole pages at once
	// (Redis answers one connection's pipeline while the next is written or
	// decoded on another), and this goroutine files the decoded pages: the
	// collector is not safe for concurrent use. The first error cancels the
	// scan and the reads; the pages still queued drain unread.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		failOnce sync.Once
		firstErr error
	)
	fail := func(err error) {
		failOnce.Do(func() {
			firstErr = err
			cancel()
		})
	}
	pages := make(chan []string, 2*readers)
	decoded := make(chan []keyResult, 2*readers)
	go func() {
		defer close(pages)
		err := scanKeys(sctx, ns, sc.scanPattern(), func(keys []string) error {
			select {
			case pages <- keys:
				return nil
			case <-sctx.Done():
				return sctx.Err()
			}
		})
		if err != nil {
			fail(err)
		}
	}()
	var wg sync.WaitGroup
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for keys := range pages {
				if sctx.Err() != nil {
					continue
				}
				out := make([]keyResult, 0, len(keys))
				if err := readKeys(sctx, c, sc, keys, func(key string, vals []string, rerr error) {
					out = append(out, decode(sc, key, vals, rerr))
				}); err != nil {
					fail(err)
					continue
				}
				decoded <- out
			}
		}()
	}
	go func() {
		wg.Wait()
		close(decoded)
	}()
	for page := range decoded {
		for _, r := range page {
			col.add(r)
		}
	}
	// decoded is closed: the scanner and readers are done, firstErr is set.
	err = firstErr
	if err == nil && recheck != nil {
		if keys := recheck(col.found); len(keys) > 0 {
			err = readKeys(ctx, c, sc, keys, col.key)
		}
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if set, err = col.done(); err != nil {
		return nil, nil, nil, fmt.Errorf("redis: %w", err)
	}
	return set, col.multi, col.problems, nil
}

// List returns the valid routes stored in Redis under schema, sorted by
// name; malformed entries are left out (Load reports them).
func List(ctx context.Context, c redis.UniversalClient, schema string) ([]balancer.RouteSpec, error) {
	routes, _, err := Load(ctx, c, schema)
	return routes, err
}

// Problem is a key skipped in full or in part, and why.
type Problem struct {
	Key     string
	Problem string
}

// Load is List that also returns the malformed keys, sorted by key.
func Load(ctx context.Context, c redis.UniversalClient, schema string) ([]balancer.RouteSpec, []Problem, error) {
	sc, err := parseSchema(schema)
	if err != nil {
		return nil, nil, err
	}
	set, _, problems, err := loadAll(ctx, c, sc, 0, nil)
	if err != nil {
		return nil, nil, err
	}
	out := make([]Problem, 0, len(problems))
	for k, p := range problems {
		out = append(out, Problem{Key: k, Problem: p})
	}
	slices.SortFunc(out, func(a, b Problem) int { return strings.Compare(a.Key, b.Key) })
	return set.Sorted(), out, nil
}

// hipacheAdd creates the list with its identifier when missing and appends
// the backend unless the route has it already, atomically.
var hipacheAdd = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('RPUSH', KEYS[1], ARGV[1]) end
local l = redis.call('LRANGE', KEYS[1], 1, -1)
for _, v in ipairs(l) do if v == ARGV[2] then return 0 end end
redis.call('RPUSH', KEYS[1], ARGV[2])
return 1`)

// hipacheRemove removes every occurrence of a backend and deletes the list
// when only the identifier would be left. It counts occurrences after the
// identifier and removes that many from the tail, so an identifier equal to
// the URL survives. Returns -1 when the key is missing.
var hipacheRemove = redis.NewScript(`
local l = redis.call('LRANGE', KEYS[1], 0, -1)
if #l == 0 then return -1 end
local n = 0
for i = 2, #l do if l[i] == ARGV[1] then n = n + 1 end end
if n == 0 then return 0 end
if #l - n <= 1 then redis.call('DEL', KEYS[1]) return n end
redis.call('LREM', KEYS[1], -n, ARGV[1])
return n`)

// Add adds backend to route name, creating the route when missing. Under
// the hipache schema backend is a URL as in the static configuration; the
// new list's identifier is name. Under the sets schema backend is a member
// ("host", "host:port", "[v6]:port") or a URL without options, whose host
// and port become the member; for the catch-all "*" an http:// URL goes to
// httpDefault, a tls:// URL to httpsDefault and a member to both.
func Add(ctx context.Context, c redis.UniversalClient, schema, name, backend string) error {
	sc, err := parseSchema(schema)
	if err != nil {
		return err
	}
	n, err := normalizeName(name)
	if err != nil {
		return fmt.Errorf("redis: add: %w", err)
	}
	if sc == hipache {
		if _, err := balancer.ParseBackend(backend); err != nil {
			return fmt.Errorf("redis: add: %w", err)
		}
		key := hipachePrefix + n
		if err := hipacheAdd.Run(ctx, c, []string{key}, n, backend).Err(); err != nil {
			return fmt.Errorf("redis: add %s: %w", key, err)
		}
		return nil
	}
	keys, member, err := setsTarget(n, backend)
	if err != nil {
		return fmt.Errorf("redis: add: %w", err)
	}
	for _, key := range keys {
		if err := c.SAdd(ctx, key, member).Err(); err != nil {
			return fmt.Errorf("redis: add %s: %w", key, err)
		}
	}
	return nil
}

// Remove removes backend from route name, and the route when no backend is
// left; backend "" removes the whole route. It returns an error wrapping
// ErrNotFound when there was nothing to remove.
func Remove(ctx context.Context, c redis.UniversalClient, schema, name, backend string) error {
	sc, err := parseSchema(schema)
	if err != nil {
		return err
	}
	n, err := normalizeName(name)
	if err != nil {
		return fmt.Errorf("redis: remove: %w", err)
	}
	var keys []string
	member := backend
	switch {
	case sc == hipache:
		keys = []string{hipachePrefix + n}
	case backend == "" && n == CatchAll:
		keys = []string{setsKey(setsHTTPDefault), setsKey(setsHTTPSDefault)}
	case backend == "":
		keys = []string{setsKey(n)}
	default:
		if keys, member, err = setsTarget(n, backend); err != nil {
			return fmt.Errorf("redis: remove: %w", err)
		}
	}
	var removed int64
	for _, key := range keys {
		var cmd redis.Cmder
		var got int64
		switch {
		case backend == "":
			r := c.Del(ctx, key)
			cmd, got = r, r.Val()
		case sc == hipache:
			r := hipacheRemove.Run(ctx, c, []string{key}, backend)
			v, _ := r.Int64()
			cmd, got = r, max(v, 0)
		default:
			r := c.SRem(ctx, key, member)
			cmd, got = r, r.Val()
		}
		if err := cmd.Err(); err != nil {
			return fmt.Errorf("redis: remove %s: %w", key, err)
		}
		removed += got
	}
	if removed == 0 {
		if backend == "" {
			return fmt.Errorf("redis: remove: route %q: %w", n, ErrNotFound)
		}
		return fmt.Errorf("redis: remove: route %q has no backend %q: %w", n, backend, ErrNotFound)
	}
	return nil
}

func setsKey(host string) string { return setsPrefix + host + setsSuffix }

// setsTarget maps a route name and a backend (member or URL) to the keys of
// the sets schema to change and the member to put in or take out.
func setsTarget(name, backend string) (keys []string, member string, err error) {
	member = backend
	scheme := balancer.Scheme(0)
	if strings.Contains(backend, "://") {
		spec, err := balancer.ParseBackend(backend)
		if err != nil {
			return nil, "", err
		}
		if spec.Weight != 1 || spec.Proxy != balancer.ProxyNone || spec.Drain || spec.Source != balancer.SourceProxy {
			return nil, "", fmt.Errorf("backend %q: the sets schema has no backend options", backend)
		}
		if spec.IsUnix() {
			return nil, "", fmt.Errorf("backend %q: the sets schema holds host:port members, not unix sockets (use the hipache schema)", backend)
		}
		scheme = spec.Scheme
		member = net.JoinHostPort(spec.Host, fmt.Sprint(spec.Port))
	}
	if _, err := setsMember(member, true, true); err != nil {
		return nil, "", err
	}
	if name != CatchAll {
		return []string{setsKey(name)}, member, nil
	}
	switch scheme {
	case balancer.SchemeHTTP:
		return []string{setsKey(setsHTTPDefault)}, member, nil
	case balancer.SchemeTLS:
		return []string{setsKey(setsHTTPSDefault)}, member, nil
	}
	return []string{setsKey(setsHTTPDefault), setsKey(setsHTTPSDefault)}, member, nil
}
