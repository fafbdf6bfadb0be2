package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// importWorkers is the number of concurrent writers of an import: enough
// for the store's group commit to share each fsync among several objects.
const importWorkers = 8

// maxImportBytes caps the file import reads.
const maxImportBytes = 1 << 30

// importResult counts what an import did.
type importResult struct {
	created, replaced, unchanged, skipped int
}

// stored is the number of objects the calendar now holds as the file has
// them.
func (r importResult) stored() int { return r.created + r.replaced + r.unchanged }

// cmdImport stores the objects of an .ics file in a calendar. It needs
// the data file to itself.
func cmdImport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fl, code, ok := parseFlags("import", args, stdout, stderr)
	if !ok {
		return code
	}
	target, file := fl.args[0], fl.args[1]
	user, cal, ok := strings.Cut(target, "/")
	if !ok || user == "" || cal == "" || strings.Contains(cal, "/") {
		fmt.Fprintf(stderr, "calgate import: %q is not USER/CALENDAR\n", target)
		return 2
	}
	cfg := loadValidConfig(fl.config, stderr)
	if cfg == nil {
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "calgate import:", err)
		return 1
	}
	data, err := readImport(file, stdin)
	if err != nil {
		return fail(err)
	}
	log := fl.logger(stderr)
	store, err := openCLIStore(cfg, log)
	if errors.Is(err, errRunning) {
		return fail(fmt.Errorf("stop calgate first: import needs the data file %s to itself, and a running calgate (or another calgate command) holds it", cfg.Data))
	}
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	if err := ensureCalendars(store, cfg, log); err != nil {
		return fail(err)
	}
	c, err := importTarget(store, cfg, user, cal)
	if err != nil {
		return fail(err)
	}

	start := time.Now()
	objs, warns, err := new(ical.Zones).SplitFeed(data)
	for _, w := range warns {
		fmt.Fprintf(stderr, "calgate import: %s: %s\n", file, w)
	}
	if err != nil {
		return fail(fmt.Errorf("%s: %w", file, err))
	}
	res := importResult{skipped: countDropped(warns)}
	bar := newProgress(stderr, len(objs), "importing")
	got, problems := importObjects(store, &c, objs, bar)
	bar.Finish()
	res.created, res.replaced, res.unchanged = got.created, got.replaced, got.unchanged
	res.skipped += got.skipped
	for _, p := range problems {
		fmt.Fprintf(stderr, "calgate import: %s: %s\n", file, p)
	}
	fmt.Fprintf(stdout, "imported %d objects (%d replaced, %d unchanged), %d skipped, in %s\n",
		res.stored(), res.replaced, res.unchanged, res.skipped, time.Since(start).Round(time.Millisecond))
	if c.Kind == calendarKindCalDAV && res.created+res.replaced > 0 {
		fmt.Fprintf(stdout, "%d writes are queued for the upstream of %s/%s: calgate pushes them when it runs (or run calgate sync %s/%s)\n",
			res.created+res.replaced, user, cal, user, cal)
	}
	if res.stored() == 0 {
		fmt.Fprintf(stderr, "calgate import: %s: nothing could be stored\n", file)
		return 1
	}
	return 0
}

// readImport reads the file to import; "-" is stdin.
func readImport(file string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxImportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if len(data) > maxImportBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes; split it into smaller files", file, maxImportBytes)
	}
	return data, nil
}

// importTarget returns calendar user/cal if an import may write into it.
func importTarget(store *cache.Store, cfg *Config, user, cal string) (cache.Calendar, error) {
	c, err := store.GetCalendar(user, cal)
	if errors.Is(err, cache.ErrNotFound) {
		var names []string
		for _, u := range cfg.Users {
			cals, err := store.ListCalendars(u.Name)
			if err != nil {
				return c, err
			}
			for _, c := range cals {
				if c.Kind != calendarKindMerged && c.Kind != calendarKindICS {
					names = append(names, u.Name+"/"+c.ID)
				}
			}
		}
		return c, fmt.Errorf("no calendar %s/%s (calendars that take imports: %s)", user, cal, strings.Join(names, ", "))
	}
	if err != nil {
		return c, err
	}
	switch c.Kind {
	case calendarKindICS:
		return c, fmt.Errorf("%s/%s mirrors a published feed: its next sync would undo an import; import into a local or caldav calendar", user, cal)
	case calendarKindMerged:
		if c.WriteTo != "" {
			return c, fmt.Errorf("%s/%s is a merged view; import into the calendar it writes to, %s/%s", user, cal, user, c.WriteTo)
		}
		return c, fmt.Errorf("%s/%s is a read-only merged view; import into one of its calendars", user, cal)
	}
	return c, nil
}

// droppedSummary is SplitFeed's warning that counts the dropped items.
var droppedSummary = regexp.MustCompile(`^(\d+) components or objects dropped; `)

// countDropped counts the items SplitFeed dropped: its summary warning
// says how many; without it (warnings are capped), its warnings about
// dropped items are counted.
func countDropped(warns []string) int {
	n := 0
	for _, w := range warns {
		if m := droppedSummary.FindStringSubmatch(w); m != nil {
			if d, err := strconv.Atoi(m[1]); err == nil {
				return d
			}
		}
		if strings.Contains(w, " dropped") {
			n++
		}
	}
	return n
}

// importObjects stores objs in calendar c with importWorkers concurrent
// writers (client writes: a caldav calendar queues them for its
// upstream). An object whose UID the calendar holds replaces it under its
// name, unless its content is the same (ignoring DTSTAMP and
// LAST-MODIFIED). It returns the counts and a line per skipped object.
func importObjects(store *cache.Store, c *cache.Calendar, objs []ical.FeedObject, bar progress) (importResult, []string) {
	var (
		created, replaced, unchanged atomic.Int64
		mu                           sync.Mutex // protects problems
		problems                     []string
		wg                           sync.WaitGroup
	)
	jobs := make(chan *ical.FeedObject)
	for range importWorkers {
		wg.Go(func() {
			for o := range jobs {
				outcome, err := importObject(store, c, o)
				switch {
				case err != nil:
					mu.Lock()
					problems = append(problems, fmt.Sprintf("UID %q skipped: %v", o.UID, err))
					mu.Unlock()
				case outcome == importCreated:
					created.Add(1)
				case outcome == importReplaced:
					replaced.Add(1)
				default:
					unchanged.Add(1)
				}
				bar.Add(1)
			}
		})
	}
	for i := range objs {
		jobs <- &objs[i]
	}
	close(jobs)
	wg.Wait()
	slices.Sort(problems)
	return importResult{created: int(created.Load()), replaced: int(replaced.Load()),
		unchanged: int(unchanged.Load()), skipped: len(problems)}, problems
}

// importOutcome is what importObject did.
type importOutcome int

const (
	importCreated importOutcome = iota
	importReplaced
	importUnchanged
)

// importObject stores o in calendar c.
func importObject(store *cache.Store, c *cache.Calendar, o *ical.FeedObject) (importOutcome, error) {
	if len(c.Components) > 0 && !slices.Contains(c.Components, o.Component) {
		return 0, fmt.Errorf("calendar %s/%s does not accept %s components (it accepts %s)",
			c.User, c.ID, o.Component, strings.Join(c.Components, ", "))
	}
	obj := cache.Object{Name: o.Name, UID: o.UID, Component: o.Component, Start: o.Start, End: o.End,
		Exact: o.Exact, Warnings: o.Warnings, Data: o.Data}
	cond := cache.PutConditions{IfNoneMatch: true}
	outcome := importCreated
	name, err := store.LookupUID(c.User, c.ID, o.UID)
	switch {
	case err == nil:
		cur, err := store.GetObject(c.User, c.ID, name)
		if err != nil {
			return 0, err
		}
		if ical.FeedIdentity(cur.Data) == o.Identity {
			return importUnchanged, nil
		}
		obj.Name, cond, outcome = name, cache.PutConditions{IfMatch: cur.ETag}, importReplaced
	case !errors.Is(err, cache.ErrNotFound):
		return 0, err
	}
	if _, _, err := store.PutObject(c.User, c.ID, obj, cond); err != nil {
		if errors.Is(err, cache.ErrPrecondition) && outcome == importCreated {
			return 0, fmt.Errorf("the calendar already has an object named %s with another UID", obj.Name)
		}
		return 0, err
	}
	return outcome, nil
}
