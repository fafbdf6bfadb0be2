package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/feed"
)

// Merged calendars (DESIGN.md §3 "merged"; issue 5, item 4).
//
// A calendar of Kind "merged" holds no objects. It is served at
// /dav/calendars/{user}/{id}/ like any calendar, with its own displayname,
// color, description, order and timezone (PROPPATCH stores them on its own
// record), and lists the objects of its members (cache.Calendar.Members,
// calendars of the same user) under the names "{member}~{name}". Member ids
// cannot contain '~', object names can: a name is split at its first '~'.
// Such hrefs depend only on stored ids and names, so they are the same
// after a restart.
//
// De-duplication: objects with the same UID in several members are one
// resource, the one feed.Winner picks. A listing (PROPFIND Depth 1,
// calendar-query, sync-collection, GET of the collection) dedupes by the
// UID stored with each object and parses only the colliding objects, to
// call Winner with their Data. The result (a mergedIndex) is cached per
// merged calendar and per member version vector, so it is rebuilt only
// after a member changed. An object that loses shows nowhere: GET and
// calendar-multiget of its href answer 404.
//
// Version: the getctag and the sync-token are derived from the members'
// (epoch, revision) vector, so they change exactly when a member changes
// and never when another calendar does:
//
//	getctag     m-<hash>-<rev1>.<rev2>...
//	sync-token  urn:calgate:sync:m:<hash>:<rev1>.<rev2>...:<hidden>
//
// <hash> is a hash of the member ids and epochs (a re-created member or a
// changed member list invalidates old tokens), a missing member counting
// with revision 0. <hidden> is a hash of the set of losing objects at the
// token's state. sync-collection from a token is the union of each
// member's cache.Changes since its revision, mapped to merged hrefs: a
// deletion is a 404; a put is the object if it is visible. If the set of
// losers is unchanged, that is exact: no unchanged object became visible
// or hidden. If it changed (a winner was deleted, or a new version of a
// colliding UID now wins), an unchanged object may have become visible,
// and a deleted object's UID is not known any more, so the answer is the
// whole collection plus a 404 for every deleted and every hidden object
// (what a client does with an initial sync, so it converges). A DAV:limit
// smaller than the answer is refused with DAV:number-of-matches-within-
// limits (RFC 6578 §3.7) rather than truncated.
//
// Writes: without WriteTo a merged calendar is read-only: PUT, DELETE,
// MOVE and COPY into it, MOVE out of it and PROPPATCH of its objects get
// 403 DAV:need-privileges, and current-user-privilege-set says so (it
// grants write-properties only: the merged calendar's own properties).
// With WriteTo (a member that is not read-only), a PUT of "{id}/{name}"
// whose name has no member prefix (or "{writeTo}~{name}") stores the
// object as {name} in the WriteTo member, through its normal path (the
// outbox if that member mirrors a CalDAV collection), and answers with the
// Location "{id}/{writeTo}~{name}". Objects of the other members stay
// read-only. A name without a member prefix stays an alias of the WriteTo
// member's object of that name for GET, PUT and DELETE, so that clients
// that ignore Location can keep using the href they chose; listings show
// only the canonical "{writeTo}~{name}". A new object whose UID another
// member already holds is refused with CALDAV:no-uid-conflict naming the
// merged href (the merged calendar is one collection to the client); this
// check and the store's write are two transactions. OnChange reports the
// member that was written.
//
// Members that do not exist, or are themselves merged, contribute nothing
// (configuration validation should refuse them). A write_to that is not a
// member makes the calendar read-only.

// kindMerged is the cache.Calendar.Kind of a merged calendar.
const kindMerged = "merged"

// mergedSep separates the member id from the member's object name.
const mergedSep = "~"

// mergedTokenPrefix starts the sync-token of a merged calendar. It has no
// '-', so parseSyncToken refuses it, and a plain calendar's token never
// parses as a merged one.
const mergedTokenPrefix = syncTokenPrefix + "m:"

// mergedMember is one entry of a merged calendar's Members.
type mergedMember struct {
	id  string
	cal cache.Calendar // valid if ok
	ok  bool           // the calendar exists and is not merged itself
}

// mergedView is a merged calendar as one request sees it.
type mergedView struct {
	cal     cache.Calendar // the merged calendar's own record
	members []mergedMember // in the order of cal.Members
	hash    string         // of the member ids and epochs
	revs    []uint64       // of each member (0 if missing)
	idx     *mergedIndex
}

// mref names an object of a member: the member's index in members and the
// object's name in it.
type mref struct {
	m    int
	name string
}

// mergedEntry is a visible object: its member and its metadata (no Data).
type mergedEntry struct {
	m   int
	obj cache.Object
}

// mergedIndex is the de-duplicated listing of a merged calendar at one
// version vector. It is immutable once built.
type mergedIndex struct {
	vector    string
	visible   []mergedEntry // member order, then name
	byRef     map[mref]int  // index into visible
	hidden    map[mref]bool // objects that lost to another with their UID
	hiddenSum string
}

// mergedCache keeps the last index of each merged calendar.
type mergedCache struct {
	mu sync.Mutex                 // protects m
	m  map[[2]string]*mergedIndex // (user, calendar) -> index
}

func (c *mergedCache) get(user, cal, vector string) *mergedIndex {
	c.mu.Lock()
	defer c.mu.Unlock()
	if idx := c.m[[2]string{user, cal}]; idx != nil && idx.vector == vector {
		return idx
	}
	return nil
}

func (c *mergedCache) put(user, cal string, idx *mergedIndex) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[2]string]*mergedIndex)
	}
	c.m[[2]string{user, cal}] = idx
}

// loadMembers reads the member calendars of merged calendar cal, one
// GetCalendar each.
func (h *Handler) loadMembers(cal cache.Calendar) (*mergedView, error) {
	v := &mergedView{cal: cal, members: make([]mergedMember, len(cal.Members)), revs: make([]uint64, len(cal.Members))}
	sum := sha256.New()
	for i, id := range cal.Members {
		v.members[i].id = id
		epoch := ""
		mc, err := h.store.GetCalendar(cal.User, id)
		switch {
		case errors.Is(err, cache.ErrNotFound):
		case err != nil:
			return nil, err
		case mc.Kind == kindMerged || id == cal.ID:
			epoch = "merged"
		default:
			v.members[i].cal, v.members[i].ok = mc, true
			epoch, v.revs[i] = mc.Epoch, mc.Revision
		}
		fmt.Fprintf(sum, "%s\x00%s\x00", id, epoch)
	}
	v.hash = hex.EncodeToString(sum.Sum(nil)[:8])
	return v, nil
}

func (v *mergedView) revString() string {
	var b strings.Builder
	for i, r := range v.revs {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(r, 10))
	}
	return b.String()
}

func (v *mergedView) vector() string { return v.hash + ":" + v.revString() }

// ctag is the getctag (and the collection's ETag).
func (v *mergedView) ctag() string { return "m-" + v.hash + "-" + v.revString() }

// syncToken is the DAV:sync-token.
func (v *mergedView) syncToken() string {
	return mergedTokenPrefix + v.hash + ":" + v.revString() + ":" + v.idx.hiddenSum
}

// parseMergedToken splits a token made by syncToken.
func parseMergedToken(tok string) (hash string, revs []uint64, hidden string, ok bool) {
	rest, found := strings.CutPrefix(tok, mergedTokenPrefix)
	if !found {
		return "", nil, "", false
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return "", nil, "", false
	}
	if parts[1] != "" {
		for _, s := range strings.Split(parts[1], ".") {
			r, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return "", nil, "", false
			}
			revs = append(revs, r)
		}
	}
	return parts[0], revs, parts[2], true
}

// mergedView returns the view of merged calendar cal with its index,
// building the index if a member changed since the cached one. The member
// vector is read before and after listing; an index is cached only if the
// two agree, so a cached index always matches its vector.
func (h *Handler) mergedView(cal cache.Calendar) (*mergedView, error) {
	v, err := h.loadMembers(cal)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		if idx := h.merged.get(cal.User, cal.ID, v.vector()); idx != nil {
			v.idx = idx
			return v, nil
		}
		idx, err := h.buildIndex(v)
		if err != nil {
			return nil, err
		}
		again, err := h.loadMembers(cal)
		if err != nil {
			return nil, err
		}
		if again.vector() == v.vector() {
			h.merged.put(cal.User, cal.ID, idx)
			v.idx = idx
			return v, nil
		}
		if attempt == 2 {
			// Members keep changing: serve this index uncached. It may be
			// newer than v's revisions, which only makes a client see a
			// change twice.
			v.idx = idx
			return v, nil
		}
		v = again
	}
}

// buildIndex lists the members' object metadata and dedupes by UID,
// reading the Data of colliding objects only.
func (h *Handler) buildIndex(v *mergedView) (*mergedIndex, error) {
	user := v.cal.User
	byUID := make(map[string][]mergedEntry)
	for i, m := range v.members {
		if !m.ok {
			continue
		}
		objs, err := h.store.ListObjects(user, m.id)
		if errors.Is(err, cache.ErrNotFound) {
			continue // deleted since loadMembers; the vector check notices
		}
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			byUID[o.UID] = append(byUID[o.UID], mergedEntry{m: i, obj: o})
		}
	}
	idx := &mergedIndex{vector: v.vector(), hidden: make(map[mref]bool)}
	for _, entries := range byUID {
		win := 0
		if len(entries) > 1 {
			w, err := h.winner(user, v, entries)
			if err != nil {
				return nil, err
			}
			win = w
		}
		for j, e := range entries {
			if j == win {
				idx.visible = append(idx.visible, e)
			} else {
				idx.hidden[mref{e.m, e.obj.Name}] = true
			}
		}
	}
	slices.SortFunc(idx.visible, func(a, b mergedEntry) int {
		if a.m != b.m {
			return a.m - b.m
		}
		return strings.Compare(a.obj.Name, b.obj.Name)
	})
	idx.byRef = make(map[mref]int, len(idx.visible))
	for i, e := range idx.visible {
		idx.byRef[mref{e.m, e.obj.Name}] = i
	}
	hidden := make([]string, 0, len(idx.hidden))
	for r := range idx.hidden {
		hidden = append(hidden, v.members[r.m].id+"\x00"+r.name+"\x00")
	}
	slices.Sort(hidden)
	if len(hidden) == 0 {
		idx.hiddenSum = "0"
	} else {
		sum := sha256.Sum256([]byte(strings.Join(hidden, "")))
		idx.hiddenSum = hex.EncodeToString(sum[:6])
	}
	return idx, nil
}

// winner returns the index in entries (objects with one UID, in member
// order) of the object that is shown.
func (h *Handler) winner(user string, v *mergedView, entries []mergedEntry) (int, error) {
	objs := make([]cache.Object, 0, len(entries))
	pos := make([]int, 0, len(entries))
	for j, e := range entries {
		o, err := h.store.GetObject(user, v.members[e.m].id, e.obj.Name)
		if errors.Is(err, cache.ErrNotFound) {
			continue // deleted meanwhile; the vector check notices
		}
		if err != nil {
			return 0, err
		}
		objs = append(objs, o)
		pos = append(pos, j)
	}
	if len(objs) == 0 {
		return 0, nil
	}
	w := feed.Winner(objs)
	if w < 0 || w >= len(objs) {
		w = 0
	}
	return pos[w], nil
}

// href is the merged href of object name of member m.
func (v *mergedView) href(m int, name string) string {
	return objectHref(v.cal.User, v.cal.ID, v.members[m].id+mergedSep+name)
}

// resolve maps the name of an object of the merged calendar to a member
// and the object's name there. A name whose part before the first '~' is
// a member names that member's object; any other name is an alias in the
// WriteTo member, if there is one.
func (v *mergedView) resolve(name string) (m int, rest string, ok bool) {
	if id, r, found := strings.Cut(name, mergedSep); found && r != "" {
		if i := v.memberIndex(id); i >= 0 {
			return i, r, v.members[i].ok
		}
	}
	if i := v.memberIndex(v.cal.WriteTo); i >= 0 && v.members[i].ok {
		return i, name, true
	}
	return 0, "", false
}

func (v *mergedView) memberIndex(id string) int {
	if id == "" {
		return -1
	}
	for i, m := range v.members {
		if m.id == id {
			return i
		}
	}
	return -1
}

// writeTo returns the index of the member writes go to, or -1 if the
// merged calendar is read-only.
func (v *mergedView) writeTo() int {
	i := v.memberIndex(v.cal.WriteTo)
	if i < 0 || !v.members[i].ok || readOnly(&v.members[i].cal) {
		return -1
	}
	return i
}

// components is the union of the members' supported component sets.
func (v *mergedView) components() []string {
	var out []string
	for _, m := range v.members {
		if !m.ok {
			continue
		}
		for _, c := range m.cal.Components {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// modified is the latest change of the merged calendar or a member.
func (v *mergedView) modified() time.Time {
	t := v.cal.Modified
	for _, m := range v.members {
		if m.ok && m.cal.Modified.After(t) {
			t = m.cal.Modified
		}
	}
	return t
}

// size is the sum of the visible objects' sizes.
func (v *mergedView) size() int64 {
	var n int64
	for _, e := range v.idx.visible {
		n += e.obj.Size
	}
	return n
}

var mergedReadPrivileges = []string{"<d:read/>", "<d:write-properties/>", "<d:read-current-user-privilege-set/>", "<c:read-free-busy/>"}

// privileges is the current-user-privilege-set of res, the merged
// calendar or one of its objects.
func (v *mergedView) privileges(res *resource) []string {
	w := v.writeTo()
	switch {
	case res.kind == kindCalendar && w >= 0:
		return writePrivileges
	case res.kind == kindCalendar:
		return mergedReadPrivileges
	case w >= 0 && res.member != nil && res.member.ID == v.members[w].id:
		return writePrivileges
	}
	return readPrivileges
}

// readOnlyErr is the 403 for a write the merged calendar does not take.
func (v *mergedView) readOnlyErr(name, privilege string) error {
	why := "calendar " + v.cal.ID + " is a read-only merged view"
	if w := v.writeTo(); w >= 0 {
		why = "in merged calendar " + v.cal.ID + " only objects of " + v.members[w].id + " can be written"
	}
	return needPrivileges(objectHref(v.cal.User, v.cal.ID, name), privilege, why)
}

// mergedLookup is lookup for the merged calendar cal and its objects.
func (h *Handler) mergedLookup(user string, t target, cal cache.Calendar, withData bool) (*resource, error) {
	v, err := h.mergedView(cal)
	if err != nil {
		return nil, err
	}
	res := &resource{kind: t.kind, user: user, cal: &v.cal, mv: v, href: calendarHref(user, cal.ID)}
	if t.kind != kindObject {
		return res, nil
	}
	m, name, ok := v.resolve(t.name)
	if !ok || v.idx.hidden[mref{m, name}] {
		return nil, errNotFound
	}
	var obj cache.Object
	if withData {
		obj, err = h.store.GetObject(user, v.members[m].id, name)
	} else {
		obj, err = h.objectMeta(user, v.members[m].id, name)
	}
	if err != nil {
		return nil, storeErr(err)
	}
	res.obj, res.member, res.href = &obj, &v.members[m].cal, v.href(m, name)
	return res, nil
}

// mergedResources turns visible entries into resources, reading their
// Data if withData. Objects deleted meanwhile are left out.
func (h *Handler) mergedResources(v *mergedView, entries []mergedEntry, withData bool) ([]*resource, error) {
	user := v.cal.User
	out := make([]*resource, 0, len(entries))
	if !withData {
		for _, e := range entries {
			o := e.obj
			out = append(out, &resource{kind: kindObject, user: user, cal: &v.cal, mv: v, member: &v.members[e.m].cal, obj: &o, href: v.href(e.m, o.Name)})
		}
		return out, nil
	}
	byMember := make(map[int][]string)
	for _, e := range entries {
		byMember[e.m] = append(byMember[e.m], e.obj.Name)
	}
	for m := range v.members {
		names := byMember[m]
		if len(names) == 0 {
			continue
		}
		objs, err := h.store.GetObjects(user, v.members[m].id, names)
		if errors.Is(err, cache.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, storeErr(err)
		}
		for i := range objs {
			out = append(out, &resource{kind: kindObject, user: user, cal: &v.cal, mv: v, member: &v.members[m].cal, obj: &objs[i], href: v.href(m, objs[i].Name)})
		}
	}
	return out, nil
}

// mergedSelect returns the visible objects (with Data) that keep accepts.
// With a range (comp, start, end) only the candidates of each member's
// span index are read.
func (h *Handler) mergedSelect(v *mergedView, span *rangeHint, keep func(cache.Object) bool) ([]*resource, error) {
	user := v.cal.User
	var out []*resource
	for m, mem := range v.members {
		if !mem.ok {
			continue
		}
		visible := func(name string) bool {
			_, ok := v.idx.byRef[mref{m, name}]
			return ok
		}
		var objs []cache.Object
		var err error
		if span != nil {
			var names []string
			names, err = h.store.Candidates(user, mem.id, span.comp, span.start, span.end)
			if err == nil {
				names = slices.DeleteFunc(names, func(n string) bool { return !visible(n) })
				objs, err = h.store.GetObjects(user, mem.id, names)
			}
			if err == nil && keep != nil {
				objs = slices.DeleteFunc(objs, func(o cache.Object) bool { return !keep(o) })
			}
		} else {
			objs, err = h.store.SelectObjects(user, mem.id, func(o cache.Object) bool {
				return visible(o.Name) && (keep == nil || keep(o))
			})
		}
		if errors.Is(err, cache.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, storeErr(err)
		}
		for i := range objs {
			out = append(out, &resource{kind: kindObject, user: user, cal: &v.cal, mv: v, member: &v.members[m].cal, obj: &objs[i], href: v.href(m, objs[i].Name)})
		}
	}
	return out, nil
}

// rangeHint is a component type and time range that every match lies in.
type rangeHint struct {
	comp       string
	start, end time.Time
}

// mergedMultiget resolves the names of objects of merged calendar cal for
// calendar-multiget: the resources found, by requested name, each with
// the href as requested.
func (h *Handler) mergedMultiget(cal cache.Calendar, names []string) (map[string]*resource, error) {
	v, err := h.mergedView(cal)
	if err != nil {
		return nil, err
	}
	type want struct{ asked, name string }
	byMember := make(map[int][]want)
	for _, n := range names {
		if m, name, ok := v.resolve(n); ok && !v.idx.hidden[mref{m, name}] {
			byMember[m] = append(byMember[m], want{n, name})
		}
	}
	out := make(map[string]*resource)
	for m, wants := range byMember {
		memberNames := make([]string, len(wants))
		for i, w := range wants {
			memberNames[i] = w.name
		}
		objs, err := h.store.GetObjects(cal.User, v.members[m].id, memberNames)
		if errors.Is(err, cache.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, storeErr(err)
		}
		got := make(map[string]*cache.Object, len(objs))
		for i := range objs {
			got[objs[i].Name] = &objs[i]
		}
		for _, w := range wants {
			if o := got[w.name]; o != nil {
				c := *o
				out[w.asked] = &resource{kind: kindObject, user: cal.User, cal: &v.cal, mv: v, member: &v.members[m].cal,
					obj: &c, href: objectHref(cal.User, cal.ID, w.asked)}
			}
		}
	}
	return out, nil
}

// mergedSync answers sync-collection on merged calendar cal (see the
// comment at the top of this file).
func (h *Handler) mergedSync(w http.ResponseWriter, req *request, body *reportBody, cal cache.Calendar, token string, limit int, invalid error) error {
	v, err := h.mergedView(cal)
	if err != nil {
		return storeErr(err)
	}
	names, allprop, propname := body.props()
	withData := wantsData(names) || allprop
	if cd := body.calData(); cd != nil {
		cd.floating = h.floatingZone("", &cal)
	}
	var (
		put  []mergedEntry
		gone []string
	)
	if token == "" {
		put = v.idx.visible
	} else {
		hash, revs, hidden, ok := parseMergedToken(token)
		if !ok || hash != v.hash || len(revs) != len(v.members) {
			return invalid
		}
		full := hidden != v.idx.hiddenSum
		for m, mem := range v.members {
			if !mem.ok {
				continue
			}
			_, changes, err := h.store.Changes(req.user, mem.id, revs[m])
			if isTokenExpired(err) || errors.Is(err, cache.ErrNotFound) {
				return invalid
			}
			if err != nil {
				return storeErr(err)
			}
			for _, c := range changes {
				r := mref{m, c.Name}
				i, visible := v.idx.byRef[r]
				switch {
				case c.Revision > v.revs[m]:
					// Newer than the view: the returned token does not
					// cover it, so the next sync reports it.
				case c.Deleted:
					gone = append(gone, v.href(m, c.Name))
				case full || v.idx.hidden[r]:
					// full: reported below. Hidden with an unchanged set
					// of hidden objects: it was hidden at the token too.
				case visible:
					put = append(put, v.idx.visible[i])
				default:
					gone = append(gone, v.href(m, c.Name))
				}
			}
		}
		if full {
			put = v.idx.visible
			for r := range v.idx.hidden {
				gone = append(gone, v.href(r.m, r.name))
			}
			slices.Sort(gone)
		}
	}
	if limit >= 0 && len(put)+len(gone) > limit {
		return precond(http.StatusInsufficientStorage, dav("number-of-matches-within-limits"),
			"the changes of merged calendar %s do not fit in %d results; sync without DAV:limit", cal.ID, limit)
	}
	ms := newMultistatus()
	for _, g := range gone {
		ms.addStatus(g, http.StatusNotFound)
	}
	resources, err := h.mergedResources(v, put, withData)
	if err != nil {
		return err
	}
	for _, res := range resources {
		res.obj.Data = h.applyCalData(body.calData(), res.obj, nil)
		ms.addResource(h, res, names, allprop, propname)
	}
	ms.raw("<d:sync-token>" + escape(v.syncToken()) + "</d:sync-token>")
	ms.send(w, req.Request)
	return nil
}

// writeDest is where a write to an object resource goes.
type writeDest struct {
	cal    cache.Calendar // the calendar that stores the object
	name   string         // the object's name there
	merged *mergedView    // the merged calendar the request named, or nil
}

// href is the href clients see for object name of d.cal.
func (d *writeDest) href(user, name string) string {
	if d.merged != nil {
		return objectHref(user, d.merged.cal.ID, d.cal.ID+mergedSep+name)
	}
	return objectHref(user, d.cal.ID, name)
}

// writeTarget returns where a write to object name of calendar calID goes
// (privilege names the privilege a refusal cites): the calendar itself,
// or for a merged calendar its WriteTo member. Errors: one wrapping
// cache.ErrNotFound if the calendar does not exist, 403 need-privileges
// if it or the addressed member is read-only.
func (h *Handler) writeTarget(user, calID, name, privilege string) (writeDest, error) {
	cal, err := h.writableCalendar(user, calID, privilege)
	if err != nil {
		return writeDest{}, err
	}
	if cal.Kind != kindMerged {
		return writeDest{cal: cal, name: name}, nil
	}
	v, err := h.mergedView(cal)
	if err != nil {
		return writeDest{}, err
	}
	m, rest, ok := v.resolve(name)
	if wt := v.writeTo(); wt < 0 || !ok || m != wt {
		return writeDest{}, v.readOnlyErr(name, privilege)
	}
	return writeDest{cal: v.members[m].cal, name: rest, merged: v}, nil
}

// uidElsewhere checks, for a write of an object with uid to d in a merged
// calendar, that no other member holds uid (the merged calendar is one
// collection to clients, RFC 4791 §5.3.2.1). An object that already has
// the uid may be rewritten; skip names an object that is going away (the
// source of a MOVE: calendar skipCal, object skipName).
func (h *Handler) uidElsewhere(user string, d writeDest, uid, skipCal, skipName string) error {
	if d.merged == nil {
		return nil
	}
	if cur, err := h.objectMeta(user, d.cal.ID, d.name); err == nil && cur.UID == uid {
		return nil
	}
	v := d.merged
	for m, mem := range v.members {
		if !mem.ok || mem.id == d.cal.ID {
			continue
		}
		name, err := h.store.LookupUID(user, mem.id, uid)
		if errors.Is(err, cache.ErrNotFound) {
			continue
		}
		if err != nil {
			return storeErr(err)
		}
		if mem.id == skipCal && name == skipName {
			continue
		}
		return &davError{status: http.StatusForbidden, cond: caldav("no-uid-conflict"),
			inner: href(v.href(m, name)),
			msg:   fmt.Sprintf("UID %q is already used by %s in merged calendar %s", uid, v.members[m].id+mergedSep+name, v.cal.ID)}
	}
	return nil
}

// mergedQuery answers calendar-query on merged calendar cal or one of its
// objects: each member's span index names the candidates of a time range.
func (h *Handler) mergedQuery(w http.ResponseWriter, req *request, body *reportBody, q *compiledFilter, cal cache.Calendar) error {
	names, allprop, propname := body.props()
	q.floating = h.floatingZone(body.Timezone, &cal)
	if cd := body.calData(); cd != nil {
		cd.floating = q.floating
	}
	var found []*resource
	if req.t.kind == kindObject {
		res, err := h.mergedLookup(req.user, req.t, cal, true)
		if err != nil {
			return err
		}
		if q.candidate(*res.obj) {
			found = append(found, res)
		}
	} else {
		v, err := h.mergedView(cal)
		if err != nil {
			return storeErr(err)
		}
		var span *rangeHint
		if comp, start, end, ok := q.rangeHint(); ok {
			span = &rangeHint{comp: comp, start: start, end: end}
		}
		found, err = h.mergedSelect(v, span, q.candidate)
		if err != nil {
			return err
		}
	}
	ms := newMultistatus()
	ms.streamTo(w, req.Request)
	for _, res := range found {
		o := res.obj
		ok, parsed, err := h.matchObject(q, o)
		if err != nil {
			h.log.Warn("calendar-query: stored object does not parse", "user", req.user, "calendar", res.member.ID, "name", o.Name, "err", err)
			continue
		}
		if !ok {
			continue
		}
		if !wantsData(names) && !allprop {
			o.Data = nil
		}
		o.Data = h.applyCalData(body.calData(), o, parsed)
		ms.addResource(h, res, names, allprop, propname)
	}
	ms.send(w, req.Request)
	return nil
}

// mergedDelete serves DELETE on a merged calendar or one of its objects.
func (h *Handler) mergedDelete(w http.ResponseWriter, req *request) error {
	if req.t.kind == kindCalendar {
		return needPrivileges(calendarHref(req.user, req.t.cal), "unbind",
			"calendar "+req.t.cal+" is a merged view defined in the configuration; remove it there")
	}
	dest, err := h.writeTarget(req.user, req.t.cal, req.t.name, "unbind")
	if err != nil {
		return storeErr(err)
	}
	ifMatch := ""
	if v := req.Header.Get("If-Match"); v != "" {
		if ifMatch, err = parseETag(v); err != nil {
			return err
		}
	}
	if err := h.store.DeleteObject(req.user, dest.cal.ID, dest.name, ifMatch); err != nil {
		return storeErr(err)
	}
	h.changed(req.user, dest.cal.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
