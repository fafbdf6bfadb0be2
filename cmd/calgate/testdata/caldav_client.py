#!/usr/bin/python3
"""End-to-end check of calgate with python3-caldav (Debian's 0.11).

Usage: caldav_client.py URL USER PASSWORD

URL is the bare server URL (http://127.0.0.1:PORT/): discovery starts there.
The script walks the usual life of a CalDAV client (discover, list and create
calendars, write events and a task, read them back, search by date,
calendar-multiget, a sync-collection round, delete) and checks every answer.
Its last line on stdout is a JSON summary; it exits 0 only if every check
passed, 1 if a check failed and 2 on an unexpected exception.

caldav 0.11's save_event(uid=...) keyword is broken, so every object is sent
as full iCalendar text with its own UID.
"""

import datetime
import json
import sys
import traceback

import caldav
import icalendar

failures = []
summary = {"failures": failures}


def check(cond, what):
    """Record a failed check; return cond so callers may stop early."""
    if not cond:
        failures.append(what)
    return cond


def vevent(uid, summ, start, hours=1):
    end = start + datetime.timedelta(hours=hours)
    return "\r\n".join([
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//calgate tests//caldav_client.py//EN",
        "BEGIN:VEVENT",
        "UID:" + uid,
        "DTSTAMP:20240101T000000Z",
        "DTSTART:" + start.strftime("%Y%m%dT%H%M%SZ"),
        "DTEND:" + end.strftime("%Y%m%dT%H%M%SZ"),
        "SUMMARY:" + summ,
        "END:VEVENT",
        "END:VCALENDAR",
        "",
    ])


def vtodo(uid, summ, due):
    return "\r\n".join([
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//calgate tests//caldav_client.py//EN",
        "BEGIN:VTODO",
        "UID:" + uid,
        "DTSTAMP:20240101T000000Z",
        "DUE:" + due.strftime("%Y%m%dT%H%M%SZ"),
        "SUMMARY:" + summ,
        "STATUS:NEEDS-ACTION",
        "END:VTODO",
        "END:VCALENDAR",
        "",
    ])


def component(data):
    """The first VEVENT/VTODO of an iCalendar text, parsed by icalendar."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    cal = icalendar.Calendar.from_ical(data)
    for c in cal.walk():
        if c.name in ("VEVENT", "VTODO", "VJOURNAL"):
            return c
    return None


def uid_of(obj):
    c = component(obj.data)
    return str(c["UID"]) if c is not None and "UID" in c else None


def summary_of(data):
    c = component(data)
    return str(c["SUMMARY"]) if c is not None and "SUMMARY" in c else None


def same_content(got, want):
    """Compare the parsed UID, SUMMARY, DTSTART, DTEND and DUE of two texts."""
    g, w = component(got), component(want)
    if g is None or w is None or g.name != w.name:
        return False
    for key in ("UID", "SUMMARY", "DTSTART", "DTEND", "DUE"):
        gv, wv = g.get(key), w.get(key)
        if (gv is None) != (wv is None):
            return False
        if gv is not None and gv.to_ical() != wv.to_ical():
            return False
    return True


def norm(data):
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return data.replace("\r\n", "\n").strip("\n")


def main(url, user, password):
    client = caldav.DAVClient(url=url, username=user, password=password)

    # Discovery from the bare server URL.
    principal = client.principal()
    summary["principal"] = str(principal.url)
    check(str(principal.url).endswith("/dav/principals/%s/" % user),
          "principal URL %s" % principal.url)
    home = principal.calendar_home_set
    summary["home"] = str(home.url)
    check(str(home.url).endswith("/dav/calendars/%s/" % user),
          "calendar home %s" % home.url)
    before = {str(c.url): c.name for c in principal.calendars()}
    summary["calendars_before"] = sorted(before.values())
    check(any(u.endswith("/personal/") for u in before),
          "configured calendar 'personal' not listed: %s" % before)

    # MKCALENDAR.
    cal = principal.make_calendar(name="Python Test", cal_id="pytest-cal")
    summary["created"] = str(cal.url)
    check(str(cal.url).endswith("/dav/calendars/%s/pytest-cal/" % user),
          "new calendar URL %s" % cal.url)
    after = {str(c.url): c.name for c in principal.calendars()}
    check(after.get(str(cal.url)) == "Python Test",
          "new calendar not listed with its name: %s" % after)
    comps = sorted(cal.get_supported_components())
    summary["supported_components"] = comps
    check("VEVENT" in comps and "VTODO" in comps, "supported components %s" % comps)

    # Three events and one task, with our own UIDs.
    t0 = datetime.datetime(2030, 1, 10, 10, 0, 0)
    texts = {
        "py-ev-1@calgate.test": vevent("py-ev-1@calgate.test", "Event one", t0),
        "py-ev-2@calgate.test": vevent("py-ev-2@calgate.test", "Event two",
                                       t0 + datetime.timedelta(days=2)),
        "py-ev-3@calgate.test": vevent("py-ev-3@calgate.test", "Event three",
                                       t0 + datetime.timedelta(days=60)),
    }
    todo_uid = "py-todo-1@calgate.test"
    todo_text = vtodo(todo_uid, "Task one", t0 + datetime.timedelta(days=1))
    saved = {}
    for uid, text in texts.items():
        saved[uid] = cal.save_event(ical=text)
    todo = cal.save_todo(ical=todo_text)
    summary["event_urls"] = sorted(str(o.url) for o in saved.values())

    # Read back.
    events = cal.events()
    summary["events"] = len(events)
    check(sorted(uid_of(e) for e in events) == sorted(texts),
          "events() UIDs %s" % sorted(uid_of(e) for e in events))
    for e in events:
        uid = uid_of(e)
        if uid in texts:
            check(same_content(e.data, texts[uid]), "events() data of %s differs" % uid)
    todos = cal.todos()
    summary["todos"] = len(todos)
    check([uid_of(t) for t in todos] == [todo_uid],
          "todos() UIDs %s" % [uid_of(t) for t in todos])
    if todos:
        check(same_content(todos[0].data, todo_text), "todos() data differs")
    for uid, text in texts.items():
        e = cal.event_by_uid(uid)
        check(same_content(e.data, text), "event_by_uid(%s) data differs" % uid)
    check(str(cal.todo_by_uid(todo_uid).url) == str(todo.url), "todo_by_uid URL")

    # Date search covering events one and two only.
    found = cal.search(start=datetime.datetime(2030, 1, 9), end=datetime.datetime(2030, 1, 20),
                       event=True, expand=False)
    found_uids = sorted(uid_of(e) for e in found)
    summary["search"] = found_uids
    check(found_uids == ["py-ev-1@calgate.test", "py-ev-2@calgate.test"],
          "date search found %s" % found_uids)

    # calendar-multiget on the event URLs: the bytes come back as sent. The
    # library rewrites the text before its PUT (it re-adds the UID), so
    # compare with what it sent, and the meaning with what we gave it.
    got = cal.calendar_multiget([o.url for o in saved.values()])
    summary["multiget"] = len(got)
    check(len(got) == 3, "multiget returned %d objects" % len(got))
    for o in got:
        uid = uid_of(o)
        if check(uid in texts, "multiget returned unknown UID %s" % uid):
            check(norm(o.data) == norm(saved[uid].data),
                  "multiget data of %s does not round-trip:\n%r\n!=\n%r" % (uid, o.data, saved[uid].data))
            check(same_content(o.data, texts[uid]), "multiget data of %s differs" % uid)

    # A sync-collection round.
    initial = cal.objects_by_sync_token()
    token = initial.sync_token
    initial_urls = sorted(str(o.url) for o in initial)
    summary["sync_initial"] = len(initial_urls)
    check(token, "no sync token")
    check(initial_urls == sorted([str(o.url) for o in saved.values()] + [str(todo.url)]),
          "initial sync lists %s" % initial_urls)

    changed = cal.event_by_uid("py-ev-1@calgate.test")
    changed.data = texts["py-ev-1@calgate.test"].replace("SUMMARY:Event one", "SUMMARY:Event one (moved)")
    changed.save()
    gone = cal.event_by_uid("py-ev-2@calgate.test")
    gone.delete()

    delta = cal.objects_by_sync_token(sync_token=token, load_objects=True)
    delta_urls = sorted(str(o.url) for o in delta)
    summary["sync_delta"] = delta_urls
    check(delta.sync_token and delta.sync_token != token, "sync token did not move")
    check(delta_urls == sorted([str(changed.url), str(gone.url)]),
          "sync delta lists %s, want the changed and the deleted event" % delta_urls)
    for o in delta:
        if str(o.url) == str(changed.url):
            check(o.data is not None and summary_of(o.data) == "Event one (moved)",
                  "sync delta: changed event has %r" % (o.data,))
        elif str(o.url) == str(gone.url):
            check(o.data is None, "sync delta: deleted event still has data")
    again = cal.objects_by_sync_token(sync_token=delta.sync_token)
    summary["sync_again"] = len(list(again))
    check(summary["sync_again"] == 0, "sync from the newest token lists %d objects" % summary["sync_again"])

    # Delete an event, then the calendar.
    cal.event_by_uid("py-ev-3@calgate.test").delete()
    left = sorted(uid_of(e) for e in cal.events())
    summary["events_left"] = left
    check(left == ["py-ev-1@calgate.test"], "events after delete %s" % left)
    cal.delete()
    final = {str(c.url): c.name for c in principal.calendars()}
    summary["calendars_after"] = sorted(final.values())
    check(str(cal.url) not in final, "deleted calendar still listed")
    check(set(final) == set(before), "calendars after delete %s, before %s" % (final, before))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        sys.exit(2)
    code = 0
    try:
        main(*sys.argv[1:])
        code = 1 if failures else 0
    except Exception:
        summary["exception"] = traceback.format_exc()
        code = 2
    summary["ok"] = code == 0
    sys.stdout.flush()
    print(json.dumps(summary, sort_keys=True))
    sys.exit(code)
