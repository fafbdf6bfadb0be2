package feed

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// Renderer renders a feed again and again with Render's output, byte for
// byte, but remembers what it derived from every object it read, so that
// a rendering after a change reads and transforms only the objects that
// changed.
//
// Per member calendar it keeps the calendar's epoch and revision, and per
// object (by member and resource name, valid for the object's ETag): the
// header fields Render decides on (UID, stored span) and, once it read
// the object's bytes, the winner stamp, the transformed components, the
// TZIDs they reference, the object's VTIMEZONEs, and the window decision
// made by expansion together with the window it was made for. A later
// Render asks each member for its changes since the remembered revision
// (cache.Store.Changes) and reads only the changed objects; if the change
// log does not reach back that far or the calendar was re-created, it
// lists the headers again and reads the bytes of the objects it does not
// know at their ETag (cache.Store.SelectObjects). Deleted objects are
// forgotten. Then it de-duplicates, applies the window and concatenates,
// as Render does.
//
// Only objects Render would read are read: the bytes of an object whose
// stored span lies outside the window are read only when it competes for
// a UID. Window decisions by expansion are kept for one window: a Render
// with another now expands those objects again, so a caller that renders
// often should pass a now that moves rarely (the gateway's feeds use the
// time of their first rendering of each day).
//
// Memory: about the size of the last rendering (which Render returns and
// the Renderer keeps; the transformed bytes of the objects in it are
// slices of it) plus the transformed bytes of the candidates not in it
// (losers of a UID, objects the window leaves out after expansion), plus
// some 250 bytes of metadata per object of the members; Size reports it.
// What was read of an object the stored span puts outside the window is
// dropped unless it competes for a UID. VTIMEZONEs are kept once per
// distinct text.
//
// A Renderer is safe for concurrent use; calls are serialised. A Render
// with a Spec whose members, privacy or prefixes differ from the previous
// call's starts afresh; Name, Title, Refresh and the window may change
// freely. zones should be the same from call to call (window decisions
// made with one are kept).
type Renderer struct {
	mu     sync.Mutex        // serialises Render; protects the fields below
	conf   string            // what members and transforms cals were built for
	cals   []*calState       // per unique member, in order
	trans  []transform       // per unique member
	intern map[string]string // VTIMEZONE renderings by text, shared by entries
	swept  int               // len(intern) after the last sweep
	gen    uint64            // bumped whenever an entry changes
	last   lastRender
	size   int64
}

// lastRender is the Renderer's previous output and what it was made of.
type lastRender struct {
	out    Rendering // Body nil: none
	gen    uint64
	w      window
	header string
}

// Rendering is the output of Renderer.Render.
type Rendering struct {
	// Body is what Render returns. It is shared: do not modify it.
	Body []byte
	// Sum identifies Body for a strong ETag without hashing all of it: a
	// SHA-256 over the header, the VTIMEZONEs written and a SHA-256 of
	// each object's output, in order. Different bodies have different
	// sums; equal bodies have equal sums unless the same components came
	// from differently split objects.
	Sum [sha256.Size]byte
}

// calState is what a Renderer knows of one member calendar.
type calState struct {
	user, cal string
	loaded    bool   // epoch, rev and the entries are set
	epoch     string // of the calendar the entries were read from
	rev       uint64 // every change up to rev is in the entries
	byName    map[string]*entry
	order     []*entry // sorted by name
}

// entry is one object of a member calendar.
type entry struct {
	name, uid, etag string
	start, end      time.Time
	prep            *prepared // nil until the bytes at etag were read
	// The decision of expansion for window expW (valid if expSet).
	expW    window
	expSet  bool
	expKeep bool
}

// prepared is what Render derives from an object's bytes.
type prepared struct {
	stamp stamp
	kept  bool              // appendObject kept a component
	out   []byte            // the transformed components (appendObject's output)
	sum   [sha256.Size]byte // of out
	used  []string          // TZIDs out references
	zones []zoneRef         // the object's VTIMEZONEs with a TZID, in order
	// body is the rendering out is a slice of, nil if out is its own.
	body *byte
}

// zoneRef is one VTIMEZONE of an object: its TZID as splitComps reads it
// and its lines as Render writes them.
type zoneRef struct{ tzid, text string }

// maxAttempts bounds how often Render starts over when objects change
// while it reads them.
const maxAttempts = 3

// Render returns what Render returns for store, zones, spec and now, with
// its Sum. zones nil uses a fresh ical.Zones.
//
// Errors wrap cache.ErrNotFound when a member calendar does not exist.
func (r *Renderer) Render(store *cache.Store, zones *ical.Zones, spec Spec, now time.Time) (Rendering, error) {
	if zones == nil {
		zones = new(ical.Zones)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.configure(spec)
	w := newWindow(spec, now)
	for _, cs := range r.cals {
		if err := r.sync(store, zones, cs, w); err != nil {
			return Rendering{}, fmt.Errorf("feed %q: member %s/%s: %w", spec.Name, cs.user, cs.cal, err)
		}
	}
	header := string(appendHeader(nil, spec))
	if l := &r.last; l.out.Body != nil && l.gen == r.gen && l.w.same(w) && l.header == header {
		return l.out, nil
	}
	for attempt := 1; ; attempt++ {
		out, stale, err := r.build(store, zones, w, header, attempt < maxAttempts)
		if err != nil {
			return Rendering{}, fmt.Errorf("feed %q: %w", spec.Name, err)
		}
		if !stale {
			return out, nil
		}
	}
}

// Size returns about how many bytes the Renderer holds.
func (r *Renderer) Size() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.size
}

// configure makes the Renderer's state fit spec's members and
// transforms, forgetting everything if they differ from the last call's.
func (r *Renderer) configure(spec Spec) {
	members := uniqueMembers(spec.Members)
	trans := make([]transform, len(members))
	var key strings.Builder
	for i, m := range members {
		trans[i] = newTransform(spec, m)
		fmt.Fprintf(&key, "%q %q %t %q %q\n", m.User, m.Cal, trans[i].busy, trans[i].busySummary, trans[i].prefix)
	}
	if r.cals != nil && key.String() == r.conf {
		return
	}
	r.conf, r.trans = key.String(), trans
	r.cals = make([]*calState, len(members))
	for i, m := range members {
		r.cals[i] = &calState{user: m.User, cal: m.Cal}
	}
	r.intern, r.swept = make(map[string]string), 0
	r.last = lastRender{}
	r.gen++
}

// sync brings the entries of member cs up to the store's state.
func (r *Renderer) sync(store *cache.Store, zones *ical.Zones, cs *calState, w window) error {
	cal, err := store.GetCalendar(cs.user, cs.cal)
	if errors.Is(err, cache.ErrNotFound) && cs.loaded {
		// The calendar is gone: so are its objects.
		r.gen++
		*cs = calState{user: cs.user, cal: cs.cal}
	}
	if err != nil {
		return err
	}
	if cs.loaded && cal.Epoch == cs.epoch {
		if cal.Revision == cs.rev {
			return nil
		}
		done, err := r.applyChanges(store, zones, cs, w)
		if err != nil || done {
			return err
		}
	}
	return r.reload(store, zones, cs, w)
}

// applyChanges reads the objects of cs changed since cs.rev. It reports
// false, having changed nothing, if the change log does not reach back to
// cs.rev or the calendar was re-created.
func (r *Renderer) applyChanges(store *cache.Store, zones *ical.Zones, cs *calState, w window) (bool, error) {
	rev, changes, err := store.Changes(cs.user, cs.cal, cs.rev)
	if errors.Is(err, cache.ErrTokenExpired) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The change log is the one of the calendar the entries come from
	// only if the epoch is still theirs after reading it.
	cal, err := store.GetCalendar(cs.user, cs.cal)
	if err != nil {
		return false, err
	}
	if cal.Epoch != cs.epoch {
		return false, nil
	}
	names := make([]string, 0, len(changes))
	for _, c := range changes {
		if c.Deleted {
			r.remove(cs, c.Name)
		} else {
			names = append(names, c.Name)
		}
	}
	objs, err := store.GetObjects(cs.user, cs.cal, names)
	if err != nil {
		return false, err
	}
	j := 0
	for _, name := range names {
		if j < len(objs) && objs[j].Name == name {
			r.put(zones, cs, &objs[j], w)
			j++
		} else {
			r.remove(cs, name) // deleted since the change log was read
		}
	}
	cs.rev = rev
	return true, nil
}

// reload lists every object of cs, keeping what it knows of objects whose
// ETag did not change and reading the bytes of the others that the window
// may keep.
func (r *Renderer) reload(store *cache.Store, zones *ical.Zones, cs *calState, w window) error {
	cal, err := store.GetCalendar(cs.user, cs.cal)
	if err != nil {
		return err
	}
	r.gen++
	old := cs.byName
	byName := make(map[string]*entry, len(old))
	order := make([]*entry, 0, len(old))
	objs, err := store.SelectObjects(cs.user, cs.cal, func(o cache.Object) bool {
		e := old[o.Name]
		if e == nil || e.etag != o.ETag {
			e = &entry{name: o.Name, etag: o.ETag}
		}
		e.uid, e.start, e.end = o.UID, o.Start, o.End
		byName[o.Name] = e
		order = append(order, e)
		return e.prep == nil && !w.disjoint(o.Start, o.End)
	})
	if err != nil {
		return err
	}
	i := r.indexOf(cs)
	for k := range objs {
		if e := byName[objs[k].Name]; e != nil {
			r.prepare(zones, i, e, objs[k].Data, w)
		}
	}
	cs.byName, cs.order = byName, order
	cs.epoch, cs.rev, cs.loaded = cal.Epoch, cal.Revision, true
	return nil
}

// indexOf returns the index of cs in r.cals.
func (r *Renderer) indexOf(cs *calState) int {
	return slices.Index(r.cals, cs)
}

// put records object o (with Data) of member cs, preparing it if the
// window may keep it.
func (r *Renderer) put(zones *ical.Zones, cs *calState, o *cache.Object, w window) {
	r.gen++
	e := cs.byName[o.Name]
	if e == nil {
		e = &entry{name: o.Name}
		if cs.byName == nil {
			cs.byName = make(map[string]*entry)
		}
		cs.byName[o.Name] = e
		at, _ := slices.BinarySearchFunc(cs.order, o.Name, func(e *entry, name string) int { return strings.Compare(e.name, name) })
		cs.order = slices.Insert(cs.order, at, e)
	}
	if e.etag != o.ETag || e.prep == nil {
		*e = entry{name: o.Name, etag: o.ETag}
	}
	e.uid, e.start, e.end = o.UID, o.Start, o.End
	if e.prep == nil && !w.disjoint(o.Start, o.End) {
		r.prepare(zones, r.indexOf(cs), e, o.Data, w)
	}
}

// remove forgets object name of member cs.
func (r *Renderer) remove(cs *calState, name string) {
	if cs.byName[name] == nil {
		return
	}
	r.gen++
	delete(cs.byName, name)
	if at, ok := slices.BinarySearchFunc(cs.order, name, func(e *entry, name string) int { return strings.Compare(e.name, name) }); ok {
		cs.order = slices.Delete(cs.order, at, at+1)
	}
}

// prepare derives from data, the bytes of entry e of member i, what Render
// needs of it, and decides the window by expansion if the span does not.
func (r *Renderer) prepare(zones *ical.Zones, i int, e *entry, data []byte, w window) {
	r.gen++
	comps := splitComps(data)
	p := &prepared{stamp: objectStamp(comps)}
	used := make(map[string]bool)
	out, kept := r.trans[i].appendObject(make([]byte, 0, len(data)), comps, used)
	if kept {
		p.kept, p.out, p.sum = true, out, sha256.Sum256(out)
		p.used = make([]string, 0, len(used))
		for id := range used {
			p.used = append(p.used, id)
		}
	}
	for _, z := range comps {
		if z.name == "VTIMEZONE" && z.tzid != "" {
			p.zones = append(p.zones, zoneRef{tzid: z.tzid, text: r.internZone(appendRaw(nil, z.data))})
		}
	}
	e.prep = p
	if _, decided := w.decides(e.start, e.end); decided {
		return
	}
	if !e.expSet || !e.expW.same(w) {
		e.expW, e.expSet, e.expKeep = w, true, expandKeeps(zones, w, data)
	}
}

// internZone returns the one copy of a VTIMEZONE's text.
func (r *Renderer) internZone(b []byte) string {
	if s, ok := r.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	r.intern[s] = s
	return s
}

// cand is one member's object for a UID.
type cand struct {
	m int
	e *entry
}

// group holds the candidates of one UID, in Render's order.
type group struct {
	first cand
	rest  []cand
	done  bool
}

// build renders from the entries. If an object it has to read changed or
// vanished since its header was read, it updates the entry and, if retry,
// reports stale so that the caller builds again.
func (r *Renderer) build(store *cache.Store, zones *ical.Zones, w window, header string, retry bool) (out Rendering, stale bool, err error) {
	// Group the candidates by UID as Render does: every object the window
	// may keep, then those outside it that compete for a UID.
	n := 0
	for _, cs := range r.cals {
		n += len(cs.order)
	}
	idx := make(map[string]int32, n)
	groups := make([]group, 0, n)
	add := func(c cand) {
		if g, ok := idx[c.e.uid]; ok {
			groups[g].rest = append(groups[g].rest, c)
			return
		}
		idx[c.e.uid] = int32(len(groups))
		groups = append(groups, group{first: c})
	}
	for i, cs := range r.cals {
		for _, e := range cs.order {
			if !w.disjoint(e.start, e.end) {
				add(cand{i, e})
			}
		}
	}
	for i, cs := range r.cals {
		for _, e := range cs.order {
			if _, ok := idx[e.uid]; ok && w.disjoint(e.start, e.end) {
				add(cand{i, e})
			}
		}
	}

	// Every candidate's bytes are needed (stamps, output).
	need := make([][]*entry, len(r.cals))
	for g := range groups {
		for c := range groups[g].all() {
			if c.e.prep == nil {
				need[c.m] = append(need[c.m], c.e)
			}
		}
	}
	if stale, err := r.fetch(store, zones, w, need); err != nil || stale && retry {
		return Rendering{}, stale, err
	}

	// The winner of each UID at its first place, if the window keeps it.
	wins := make([]cand, 0, len(groups))
	for _, cs := range r.cals {
		for _, e := range cs.order {
			g, ok := idx[e.uid]
			if !ok || groups[g].done {
				continue
			}
			groups[g].done = true
			if c, ok := groups[g].pick(); ok {
				wins = append(wins, c)
			}
		}
	}
	for i := range need {
		need[i] = need[i][:0]
	}
	for _, c := range wins {
		if _, decided := w.decides(c.e.start, c.e.end); !decided && (!c.e.expSet || !c.e.expW.same(w)) {
			need[c.m] = append(need[c.m], c.e)
		}
	}
	if stale, err := r.fetch(store, zones, w, need); err != nil || stale && retry {
		return Rendering{}, stale, err
	}
	kept := wins[:0]
	for _, c := range wins {
		keep, decided := w.decides(c.e.start, c.e.end)
		if !decided {
			keep = c.e.expSet && c.e.expW.same(w) && c.e.expKeep
		}
		if keep && c.e.prep != nil && c.e.prep.kept {
			kept = append(kept, c)
		}
	}
	return r.assemble(kept, w, header, idx), false, nil
}

// all yields the candidates of g in order.
func (g *group) all() func(func(cand) bool) {
	return func(yield func(cand) bool) {
		if !yield(g.first) {
			return
		}
		for _, c := range g.rest {
			if !yield(c) {
				return
			}
		}
	}
}

// pick returns the winner among g's candidates that were read, with
// Render's rule (pick): the newest stamp, a tie to the first member.
func (g *group) pick() (cand, bool) {
	var (
		win  cand
		best stamp
		ok   bool
	)
	for c := range g.all() {
		if c.e.prep == nil {
			continue // vanished while Render read it
		}
		s := c.e.prep.stamp
		if !ok || s.newer(best) || !best.newer(s) && c.m < win.m {
			win, best, ok = c, s, true
		}
	}
	return win, ok
}

// fetch reads the bytes of the entries in need (per member) and prepares
// them, or decides their window by expansion. It reports stale if one of
// them changed or vanished since its header was read; the entry is then
// updated or forgotten.
func (r *Renderer) fetch(store *cache.Store, zones *ical.Zones, w window, need [][]*entry) (stale bool, err error) {
	for i, es := range need {
		if len(es) == 0 {
			continue
		}
		cs := r.cals[i]
		names := make([]string, len(es))
		for k, e := range es {
			names[k] = e.name
		}
		objs, err := store.GetObjects(cs.user, cs.cal, names)
		if err != nil {
			return false, fmt.Errorf("member %s/%s: %w", cs.user, cs.cal, err)
		}
		j := 0
		for _, e := range es {
			if j >= len(objs) || objs[j].Name != e.name {
				stale = true
				r.remove(cs, e.name)
				continue
			}
			o := &objs[j]
			j++
			if o.ETag != e.etag || o.UID != e.uid || !o.Start.Equal(e.start) || !o.End.Equal(e.end) {
				stale = true
				r.put(zones, cs, o, w)
				continue
			}
			if e.prep == nil {
				r.prepare(zones, i, e, o.Data, w)
			} else if _, decided := w.decides(e.start, e.end); !decided {
				r.gen++
				e.expW, e.expSet, e.expKeep = w, true, expandKeeps(zones, w, o.Data)
			}
		}
	}
	return stale, nil
}

// assemble writes the rendering of the kept winners, in order, and makes
// their outputs slices of it. idx holds the UIDs with candidates: what
// was read of the other objects outside the window is dropped (the window
// only moves forward, and they are read again if they come back).
func (r *Renderer) assemble(kept []cand, w window, header string, idx map[string]int32) Rendering {
	var (
		size      int
		used      = make(map[string]bool)
		zonesByID = make(map[string]int) // TZID (raw and unescaped) -> index in tzs
		tzs       []string
	)
	for _, c := range kept {
		p := c.e.prep
		size += len(p.out)
		for _, id := range p.used {
			used[id] = true
		}
		for _, z := range p.zones {
			if _, dup := zonesByID[z.tzid]; dup {
				continue
			}
			zonesByID[z.tzid] = len(tzs)
			if u := ical.UnescapeText(z.tzid); u != z.tzid {
				if _, dup := zonesByID[u]; !dup {
					zonesByID[u] = len(tzs)
				}
			}
			tzs = append(tzs, z.text)
		}
	}
	emit := make([]bool, len(tzs))
	for id := range used {
		if j, ok := zonesByID[id]; ok && !emit[j] {
			emit[j] = true
			size += len(tzs[j])
		}
	}
	const end = "END:VCALENDAR\r\n"
	out := make([]byte, 0, len(header)+size+len(end))
	sum := sha256.New()
	out = append(out, header...)
	fmt.Fprintf(sum, "%d:%s", len(header), header)
	for j := range tzs {
		if emit[j] {
			out = append(out, tzs[j]...)
			fmt.Fprintf(sum, "%d:%s", len(tzs[j]), tzs[j])
		}
	}
	sums := make([]byte, 1, 1+len(kept)*sha256.Size)
	start := len(out)
	for _, c := range kept {
		out = append(out, c.e.prep.out...)
		sums = append(sums, c.e.prep.sum[:]...)
	}
	sum.Write(sums)
	out = append(out, end...)
	res := Rendering{Body: out}
	sum.Sum(res.Sum[:0])

	// The outputs in the rendering become slices of it; those still in the
	// previous rendering get their own copy, so that it can be freed.
	id, off := &out[0], start
	for _, c := range kept {
		p := c.e.prep
		n := len(p.out)
		p.out, p.body = out[off:off+n:off+n], id
		off += n
	}
	r.size = int64(len(out))
	live := make(map[string]bool)
	sweep := len(r.intern) > 2*r.swept+64
	for _, cs := range r.cals {
		for _, e := range cs.order {
			r.size += entryOverhead + int64(len(e.name)+len(e.uid)+len(e.etag))
			p := e.prep
			if p == nil {
				continue
			}
			if _, ok := idx[e.uid]; !ok && w.disjoint(e.start, e.end) {
				e.prep, e.expSet = nil, false
				continue
			}
			if p.body != nil && p.body != id || p.body == nil && cap(p.out) > len(p.out)+len(p.out)/4 {
				p.out, p.body = slices.Clone(p.out), nil
			}
			if p.body == nil {
				r.size += int64(cap(p.out))
			}
			r.size += int64(len(p.used)*32 + len(p.zones)*32 + len(p.sum))
			if sweep {
				for _, z := range p.zones {
					live[z.text] = true
				}
			}
		}
	}
	if sweep {
		for s := range r.intern {
			if !live[s] {
				delete(r.intern, s)
			}
		}
		r.swept = len(r.intern)
	}
	for s := range r.intern {
		r.size += int64(len(s))
	}
	r.last = lastRender{out: res, gen: r.gen, w: w, header: header}
	return res
}

// entryOverhead is about what an entry and its prepared struct take
// besides their strings and bytes.
const entryOverhead = 200
