package engine

// links are the intrusive fields of an element of a deadlineList: its
// neighbours and when it entered its list. Embedded in conn and qflow, so
// c.prev, c.next and c.since read as before.
type links[T any] struct {
	prev, next *T
	since      int64
}

// listed is what a deadlineList needs of its element type: its links and the
// field naming the list it is on (kept outside links so that each type can
// pack it with its other small fields).
type listed[T any] interface {
	*T
	deadlineLinks() (*links[T], *uint8)
}

// deadlineList is an intrusive, doubly linked list of elements that entered
// it in time order, one per fixed timeout: adding, removing and expiring are
// O(1) and allocate nothing. Connections and QUIC flows both use it.
type deadlineList[T any, P listed[T]] struct {
	id         uint8
	head, tail *T
}

func (q *deadlineList[T, P]) init(id uint8) { q.id = id }

func (q *deadlineList[T, P]) push(x *T, now int64) {
	lk, id := P(x).deadlineLinks()
	*id, lk.since = q.id, now
	lk.prev, lk.next = q.tail, nil
	if q.tail != nil {
		tl, _ := P(q.tail).deadlineLinks()
		tl.next = x
	} else {
		q.head = x
	}
	q.tail = x
}

func (q *deadlineList[T, P]) remove(x *T) {
	lk, id := P(x).deadlineLinks()
	if lk.prev != nil {
		pl, _ := P(lk.prev).deadlineLinks()
		pl.next = lk.next
	} else {
		q.head = lk.next
	}
	if lk.next != nil {
		nl, _ := P(lk.next).deadlineLinks()
		nl.prev = lk.prev
	} else {
		q.tail = lk.prev
	}
	lk.prev, lk.next, *id = nil, nil, 0
}
