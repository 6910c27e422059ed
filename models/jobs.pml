/*
 * jobs.pml: the domain job protocol (actors/domain.c, actors/vm.c,
 * actors/vm-proc.c; THREADS.md "Jobs", "Deadlines"), with undefine as a job
 * on the domain's own queue.
 *
 * Parties (each a process; a step of one is atomic):
 *   Domain   the domain actor.  One message per step: a turn touches only
 *            the actor's own state, and the mailbox (mailbox.pml) delivers
 *            in order and drops whatever arrives after the close;
 *   Client   one per job: looks the domain up in the registry, sends the job
 *            (the early CLOSED check and the append are separate steps, so a
 *            send may race with the close and be dropped: "gone");
 *   Offload  the domain's I/O strand (vm_io_submit: one operation at a time,
 *            in order): spawns QEMU, removes the definition file (undefine),
 *            cleans up after an exit; each may fail; its completion reaches
 *            the domain later as a message (dom_call), or is dropped;
 *   Qemu     the QEMU process: answers a monitor command, refuses it, or
 *            never answers; exits when killed, after an accepted powerdown,
 *            or (CRASH) on its own;
 *   Monitor  passes QEMU's replies on to the domain as steps, and its
 *            SHUTDOWN event as a note, whenever it runs: a step may arrive
 *            after the exit it preceded, or after its job ended (stale);
 *   Timer    the timer thread: delivers each delayed DEADLINE message at or
 *            after its time, in any order; stale ones too;
 *   Clock    time in ticks 0..TMAX.  Clients submit at ticks 0..SUBMIT_MAX
 *            with deadline submit + TO <= TMAX, so in every final state all
 *            deadlines have passed;
 *   Checker  runs when nothing else can move (timeout) and checks the end;
 *   Invariants  can move only in a state that breaks P1 or P7, and fails.
 *
 * Jobs: start (spawn on the strand, then "cont"), shutdown
 * ("system_powerdown", then the guest's SHUTDOWN event, or the exit and its
 * clean-up, whichever the domain hears of first), destroy
 * (preemptive: SIGKILL, or kill-on-spawn while the spawn runs; wait for the
 * exit and its clean-up), undefine.
 *
 * undefine: a job like the others, queued behind every job before it and
 * decided in the turn in which it takes the domain: it goes on only if the
 * domain is shut off and no QEMU process exists or is being spawned.  It
 * removes the definition file on the strand while it holds the domain, and
 * on success the domain leaves the registry and the actor stops in that
 * same turn (vm_domain_retire): every job still waiting ends "gone".
 *
 * -DOLD_UNDEFINE: the old design.  The caller's thread reads the published
 * snapshot; if it shows shutoff and no holder it removes the domain from
 * the registry, marks it undefining and sends the actor a stop message; the
 * actor's on_stop SIGKILLs a process it knows of and releases the pid watch
 * (so nobody reaps it).  P7 must fail (run.sh).
 *
 * Properties.  Assertions hold in every run (pan -DSAFETY); the ltl
 * formulas are checked one at a time with pan -a -N name.
 *   P1 one holder at a time (job_start, Invariants; ltl one_holder);
 *   P2 a job fails as busy or timed out only once its deadline has passed
 *      and never starts after it; nothing waits or holds forever: in every
 *      final state no job holds or waits (fail_busy, timeout_holder,
 *      Checker);
 *   P3 destroy never waits: a holder it finds is cancelled, and destroy
 *      takes the domain in the same turn (handle_job);
 *   P4 undefine goes on only once every job submitted before it has ended
 *      and only while no QEMU process exists; once it has succeeded no job
 *      starts and every other job ends "gone" or finds no domain
 *      (undefine_start, undefine_done, answer);
 *   P5 a step or an I/O completion for a job that no longer holds the
 *      domain changes nothing: a start succeeds only on its own QEMU's
 *      answer (handle_step); a stale timer ends nothing early (P2);
 *   P6 every caller is answered exactly once (answer, Checker; ltl
 *      all_answered);
 *   P7 no orphan: once the domain is undefined no QEMU process exists,
 *      running, killed or unreaped (Invariants, Checker; ltl no_orphan).
 *   P8 (-DCHECK_DISK, not part of the protocol's checks, see README.md):
 *      at the end the definition file exists exactly when the domain is
 *      registered.
 *
 * Deliberate bugs that must fail (run.sh): -DBUG_STEP_NO_ID (a step goes
 * to whoever holds the domain), -DBUG_STALE_TIMER (a deadline message ends
 * the waiters and the holder without looking at their deadlines).
 *
 * -DREACH=n turns witness n into a failing assertion: run.sh checks that
 * each interesting situation is reachable (the model is not vacuous).
 */

#ifndef TO
#define TO 2            /* every job's timeout, in ticks */
#endif
#ifndef SUBMIT_MAX
#define SUBMIT_MAX 1    /* last tick at which a client submits */
#endif
#define TMAX (SUBMIT_MAX + TO)

#ifndef CRASH
#define CRASH 1         /* QEMU may exit on its own */
#endif
#ifndef IOFAIL
#define IOFAIL 1        /* a spawn or an unlink may fail */
#endif
#ifndef SHUTDOWN
#define SHUTDOWN 0      /* the daemon may stop the actor (daemon shutdown) */
#endif
#ifndef NCLIENT
#define NCLIENT 3       /* start, undefine, one of start/shutdown/destroy; 4: one more */
#endif
#ifndef KIND3
#define KIND3 0         /* the third caller's job (0: start, shutdown or destroy) */
#endif
#define NJ NCLIENT      /* job ids 1..NJ */
#ifndef WMAX
#define WMAX NJ         /* waiting_jobs_max: one more is busy at once */
#endif
#ifndef REACH
#define REACH 0
#endif
#define WITNESS(n) assert(REACH != n)

#define MBXCAP (3 * NJ + 2)
#define NT 3            /* delayed messages pending at once */
#define NIO 3           /* I/O operations queued at once */

/* job kinds */
#define J_START    1
#define J_SHUTDOWN 2
#define J_DESTROY  3
#define J_UNDEFINE 4

/* how a job ended (what its caller hears) */
#define C_NONE     0
#define C_OK       1
#define C_STATE    2    /* wrong state (DOM_ERR_STATE) */
#define C_BUSY     3    /* gave up waiting (DOM_ERR_BUSY) */
#define C_TIMEOUT  4    /* held the domain too long (DOM_ERR_TIMEOUT) */
#define C_FAILED   5    /* QEMU refused or exited, a spawn or unlink failed */
#define C_CANCEL   6    /* preempted by destroy (DOM_ERR_CANCELLED) */
#define C_GONE     7    /* the domain stopped (DOM_ERR_GONE) */
#define C_NODOM    8    /* not found, or the send was refused: the caller answers */

/* domain state */
#define S_SHUTOFF  0
#define S_STARTING 1
#define S_RUNNING  2

/* what the domain knows of its QEMU (vm->proc) */
#define V_NONE     0
#define V_SPAWNING 1
#define V_RUNNING  2

/* the QEMU process itself */
#define P_NONE   0      /* none, or reaped */
#define P_UP     1
#define P_KILLED 2      /* SIGKILL sent, not exited yet */
#define P_EXITED 3      /* exited, not reaped */

/* a job's phase while it holds the domain */
#define PH_SPAWN 1      /* start: the spawn runs */
#define PH_CMD   2      /* waiting for the monitor's answer */
#define PH_EXIT  3      /* waiting for the process to exit */
#define PH_IO    4      /* waiting for the strand (clean-up, unlink) */

/* I/O operations */
#define IO_SPAWN  1
#define IO_UNLINK 2
#define IO_GONE   3

mtype = { M_JOB, M_STEP, M_NOTE, M_DEADLINE, M_EXIT, M_IODONE, M_STOP, CMD_CONT, CMD_POWERDOWN };

byte now = 0;

/* The domain actor's state (only its turns touch it). */
byte holder = 0;
byte wq[NJ];            /* waiting FIFO */
byte nw = 0;
byte timer_at = 0;      /* the armed deadline timer; 0: none */
byte state = S_SHUTOFF;
byte vproc = V_NONE;
bit kill_on_spawn = 0;
bit killing = 0;
byte pw = 0;            /* the pid watch: generation it watches; 0: none */
byte phase[NJ + 1];
bit io_busy = 0;        /* the strand runs an operation of ours */
byte iqk[NIO];          /* queued behind it: kind, job */
byte iqj[NIO];
byte niq = 0;
bit closed = 0;         /* the mailbox */

/* Published: the snapshot, written at the end of every turn. */
byte snap_state = S_SHUTOFF;
byte snap_holder = 0;

/* The registry, the definition file, the undefine. */
bit registered = 1;
bit disk = 1;           /* the definition file exists */
bit undefined = 0;
bit undefining = 0;     /* vm->undefining (old design) */
byte udj = 0;           /* the undefine that succeeded */

/* The QEMU process. */
byte proc = P_NONE;
byte gen = 0;           /* processes spawned; the current one's generation */
bit will_exit = 0;      /* an accepted powerdown: the guest powers off */
bit may_crash = 0;

/* Jobs. */
byte kind[NJ + 1];
byte deadline[NJ + 1];
byte seq[NJ + 1];       /* submission order (mailbox append); 0: not sent */
byte nsub = 0;
bit started[NJ + 1];
bit answered[NJ + 1];
byte jcode[NJ + 1];
byte nanswered = 0;
byte nheld = 0;
byte ndone = 0;         /* clients that have submitted (or given up) */

chan dmbx = [MBXCAP] of { mtype, byte, byte, byte };   /* the domain's mailbox */
chan qcmd = [NJ] of { byte, byte, mtype };              /* to QEMU: job, generation, command */
chan mreply = [2 * NJ] of { byte, byte, bit };          /* QEMU's replies (job 0: the SHUTDOWN
                                                           event), not yet passed on */
chan off = [1] of { byte, byte };                       /* to the strand: kind, job */
byte tmr[NT];                                           /* pending delayed messages (their time) */

ltl no_orphan { [] (undefined -> proc == P_NONE) }
ltl one_holder { [] (nheld <= 1) }
ltl all_answered { <> (nanswered == NJ) }

/*
 * Trail text: printed when spin replays a trail, nothing else (run.sh turns
 * the numbers into names: "kind 1" is start, "code 7" is gone, ...).
 */

/* ---- the caller's answer (the done callback, or the caller itself) ---- */

inline answer(j, c)
{
	assert(!answered[j]);                   /* P6 exactly once */
	assert(c != C_NONE);
#ifndef OLD_UNDEFINE
	/* P4: once undefined, everything else ends "gone" or finds nothing */
	assert(!undefined || j == udj || c == C_GONE || c == C_NODOM);
#endif
	answered[j] = 1;
	jcode[j] = c;
	nanswered++;
	printf("  tick %d: job %d (kind %d) answered: code %d\n", now, j, kind[j], c)
}

/* ---- QEMU ---- */

inline kill_qemu()                      /* vm_proc_kill: pidfd_kill(SIGKILL) */
{
	if
	:: proc == P_UP -> proc = P_KILLED; printf("  tick %d: SIGKILL to QEMU %d\n", now, gen)
	:: else
	fi
}

inline send_dom(sk, sa, sb, sc)         /* actor_send; refused once closed */
{
	if
	:: closed -> skip
	:: else -> assert(nfull(dmbx)); dmbx!sk, sa, sb, sc
	fi
}

/* The process exited: the pid watch, if there is one, fires (once). */
inline exited()
{
	proc = P_EXITED;
	printf("  tick %d: QEMU %d exits\n", now, gen);
	if
	:: pw == gen -> send_dom(M_EXIT, gen, 0, 0)
	:: else
	fi
}

/* ---- the domain actor ---- */

inline finish(j, c)                     /* dom_job_finish */
{
	assert(holder == j);
	holder = 0;
	nheld--;
	phase[j] = 0;
	answer(j, c)
}

inline fail_busy(j)
{
	assert(now >= deadline[j]);             /* P2 never before its deadline */
	WITNESS(7);
	answer(j, C_BUSY)
}

inline io_submit(k, j)                  /* vm_io_submit */
{
	if
	:: io_busy -> assert(niq < NIO); iqk[niq] = k; iqj[niq] = j; niq++
	:: else -> io_busy = 1; off!k, j
	fi
}

inline vm_abort(h, shutdown)            /* vmj_abort */
{
	if
	:: kind[h] == J_START && !shutdown ->
		if
		:: vproc == V_SPAWNING -> kill_on_spawn = 1
		:: vproc == V_RUNNING && state == S_STARTING -> killing = 1; kill_qemu()
		:: else
		fi
	:: else
	fi
}

inline arm(at)                          /* rt_send_at */
{
	if
	:: tmr[0] == 0 -> tmr[0] = at
	:: else ->
		if
		:: tmr[1] == 0 -> tmr[1] = at
		:: else -> assert(tmr[2] == 0); tmr[2] = at
		fi
	fi
}

inline rearm()                          /* dom_rearm */
{
	mn = 255;
	if
	:: holder != 0 -> mn = deadline[holder]
	:: else
	fi;
	for (i : 0 .. nw - 1) {
		if
		:: deadline[wq[i]] < mn -> mn = deadline[wq[i]]
		:: else
		fi
	};
	if
	:: mn == 255 || (timer_at != 0 && timer_at <= mn) -> skip
	:: else -> timer_at = mn; arm(mn)
	fi;
	mn = 0;
	i = 0
}

inline wq_remove(k)                     /* take wq[k] out, keep the order */
{
	for (x : k .. nw - 2) {
		wq[x] = wq[x + 1]
	};
	nw--;
	wq[nw] = 0;
	x = 0
}

inline stop_self()                      /* actor_stop_self -> dom_stopping */
{
	if
	:: !closed ->
		if
		:: holder != 0 ->
			h = holder;
			vm_abort(h, 1);
			if
			:: holder == h -> finish(h, C_GONE)
			:: else
			fi;
			h = 0
		:: else
		fi;
		do
		:: nw > 0 ->
			w = wq[0];
			wq_remove(0);
			WITNESS(2);             /* a job queued behind ends "gone" */
			answer(w, C_GONE);
			w = 0
		:: else -> break
		od;
		/* vm_on_stop: drop the queued I/O, release the process */
		for (x : 0 .. NIO - 1) {
			iqk[x] = 0; iqj[x] = 0
		};
		x = 0;
		niq = 0;
#ifdef OLD_UNDEFINE
		if
		:: undefining && vproc == V_RUNNING -> kill_qemu()     /* killed, never reaped */
		:: else
		fi;
#endif
		pw = 0;                         /* pidwatch_release */
		vproc = V_NONE;
		closed = 1;                     /* mbx_close */
		printf("  tick %d: the domain actor stops\n", now)
	:: else
	fi
}

#ifndef OLD_UNDEFINE
inline undefine_start(j)
{
	if
	:: vproc != V_NONE || state != S_SHUTOFF -> finish(j, C_STATE)
	:: else ->
		assert(proc == P_NONE);         /* P4, P7: no QEMU exists */
		for (x : 1 .. NJ) {
			/* P4: behind every job submitted before it */
			assert(seq[x] == 0 || seq[x] >= seq[j] || answered[x])
		};
		x = 0;
		phase[j] = PH_IO;
		io_submit(IO_UNLINK, j)
	fi
}

/*
 * The removal's completion: when the file is gone the domain goes, whether
 * or not the undefine still holds it (its deadline or a destroy may have
 * ended it meanwhile); its caller, if still waiting, is answered.
 */
inline undefine_done(j, ok)
{
	if
	:: ok ->
		assert(proc == P_NONE);         /* P4, P7: no QEMU could appear meanwhile */
		if
		:: holder == j && kind[j] == J_UNDEFINE -> WITNESS(1); finish(j, C_OK)
		:: else ->                      /* the undefine ended; its effect stands */
			WITNESS(9);
			printf("  tick %d: the unlink of job %d is done after it ended: the domain goes\n", now, j)
		fi;
		registered = 0;                 /* vm_domain_retire: reg_del */
		undefined = 1;
		printf("  tick %d: undefined\n", now);
		udj = j;
		stop_self()
	:: else ->
		if
		:: holder == j && kind[j] == J_UNDEFINE -> finish(j, C_FAILED)  /* "still defined" */
		:: else
		fi
	fi
}
#endif

inline job_start(j)
{
	assert(holder == 0);                    /* P1 */
	assert(now <= deadline[j]);             /* P2 */
#ifndef OLD_UNDEFINE
	assert(!undefined);                     /* P4 */
#endif
	holder = j;
	nheld++;
	assert(nheld == 1);                     /* P1 */
	started[j] = 1;
	printf("  tick %d: job %d (kind %d) takes the domain\n", now, j, kind[j]);
	if
	:: kind[j] == J_START ->
		if
		:: state != S_SHUTOFF || vproc != V_NONE -> finish(j, C_STATE)
		:: else ->                      /* vm_proc_start */
			vproc = V_SPAWNING;
			kill_on_spawn = 0;
			killing = 0;
			state = S_STARTING;
			phase[j] = PH_SPAWN;
			io_submit(IO_SPAWN, j)
		fi
	:: kind[j] == J_SHUTDOWN ->
		if
		:: state == S_SHUTOFF || vproc != V_RUNNING -> finish(j, C_STATE)
		:: else ->
			phase[j] = PH_CMD;
			assert(nfull(qcmd));
			qcmd!j, gen, CMD_POWERDOWN
		fi
	:: kind[j] == J_DESTROY ->
		if
		:: vproc == V_SPAWNING -> kill_on_spawn = 1; phase[j] = PH_EXIT
		:: vproc == V_NONE -> finish(j, C_STATE)
		:: else -> killing = 1; kill_qemu(); phase[j] = PH_EXIT
		fi
	:: kind[j] == J_UNDEFINE ->
#ifdef OLD_UNDEFINE
		assert(0)                       /* not a job in the old design */
#else
		undefine_start(j)
#endif
	fi
}

inline handle_job(j)
{
	h = 0;
	if
	:: kind[j] == J_DESTROY && holder != 0 ->      /* preempt */
		h = holder;
		if
		:: kind[h] == J_START -> WITNESS(4)
		:: kind[h] == J_UNDEFINE -> WITNESS(10)
		:: else
		fi;
		vm_abort(h, 0);
		if
		:: holder == h -> finish(h, C_CANCEL)   /* "cancelled by 'destroy'" */
		:: else
		fi
	:: else
	fi;
	if
	:: holder == 0 -> job_start(j)
	:: else ->
		assert(kind[j] != J_DESTROY);           /* P3 destroy never waits */
		if
		:: nw >= WMAX ->
			/* the queue is full: busy at once, the only busy before a deadline */
			WITNESS(13);
			answer(j, C_BUSY)
		:: else ->
			assert(nw < NJ);
			wq[nw] = j;
			nw++
		fi
	fi;
	/* P3: the holder it found was cancelled; destroy took the domain */
	assert(kind[j] != J_DESTROY || (started[j] && (h == 0 || answered[h])));
	h = 0
}

inline kick()                           /* dom_kick */
{
	do
	:: holder == 0 && nw > 0 ->
		j = wq[0];
		wq_remove(0);
		if
		:: now > deadline[j] -> fail_busy(j)
		:: else -> job_start(j)
		fi
	:: else -> break
	od;
	j = 0
}

inline timeout_holder()                 /* job_timeout_holder */
{
	h = holder;
	assert(now >= deadline[h]);             /* P2 */
	WITNESS(8);
	vm_abort(h, 0);
	if
	:: holder == h -> finish(h, C_TIMEOUT)
	:: else
	fi;
	h = 0
}

inline handle_deadline(at)
{
	if
	:: at == timer_at -> timer_at = 0
	:: else
	fi;
	w = nanswered;
	i = 0;
	do
	:: i < nw ->
		j = wq[i];
#ifdef BUG_STALE_TIMER
		if
		:: true ->
#else
		if
		:: now >= deadline[j] ->
#endif
			wq_remove(i);
			fail_busy(j)
		:: else -> i++
		fi
	:: else -> break
	od;
	i = 0;
	j = 0;
#ifdef BUG_STALE_TIMER
	if
	:: holder != 0 ->
#else
	if
	:: holder != 0 && now >= deadline[holder] ->
#endif
		timeout_holder()
	:: else
	fi;
	if
	:: w == nanswered -> WITNESS(6)         /* a stale timer: nothing to do */
	:: else
	fi;
	w = 0
}

inline handle_step(j, g, ok)            /* DOM_MSG_STEP -> vmj_step */
{
#ifdef BUG_STEP_NO_ID
	if
	:: holder != 0 && phase[holder] == PH_CMD -> j = holder;
#else
	if
	:: holder != 0 && holder == j ->       /* job->id == st->job_id */
#endif
		/*
		 * Its command's answer; for a shutdown it may come after
		 * the exit it announced (PH_IO): vmj_step does not look.
		 */
		assert(phase[j] == PH_CMD || (kind[j] == J_SHUTDOWN && phase[j] == PH_IO));
		if
		:: kind[j] == J_START ->
			if
			:: ok ->
				assert(g == gen);       /* P5: its own QEMU said so */
				WITNESS(3);
				state = S_RUNNING;
				finish(j, C_OK)
			:: else ->
				finish(j, C_FAILED);
				if
				:: vproc == V_RUNNING && state == S_STARTING -> killing = 1; kill_qemu()
				:: else
				fi
			fi
		:: kind[j] == J_SHUTDOWN ->
			if
			:: ok -> phase[j] = PH_EXIT     /* accepted: wait for the exit (and clean-up) */
			:: else -> finish(j, C_FAILED)
			fi
		:: else -> assert(0)            /* no other job talks to QEMU */
		fi
	:: else -> WITNESS(5)                   /* P5: stale, discarded */
	fi
}

/* The SHUTDOWN event from the current monitor ends a shutdown job. */
inline on_note(g)
{
	if
	:: g == gen && vproc == V_RUNNING && holder != 0 && kind[holder] == J_SHUTDOWN ->
		h = holder;
		WITNESS(12);
		finish(h, C_OK);                /* "shutting-down" */
		h = 0
	:: else
	fi
}

inline on_exit(g)                       /* on_exit_call -> vm_proc_gone */
{
	if
	:: pw != 0 && pw == g ->
		assert(proc == P_EXITED);
		proc = P_NONE;                  /* waitid: reaped */
		h = holder;
		if
		:: h != 0 && (kind[h] == J_DESTROY || kind[h] == J_SHUTDOWN) ->
			phase[h] = PH_IO;       /* answered once the files are gone */
			io_submit(IO_GONE, h)
		:: else -> io_submit(IO_GONE, 0)
		fi;
		pw = 0;                         /* vm_proc_release */
		vproc = V_NONE;
		killing = 0;
		state = S_SHUTOFF;
		if
		:: h != 0 && kind[h] != J_DESTROY && kind[h] != J_SHUTDOWN ->
			finish(h, C_FAILED)     /* QEMU exited during start */
		:: else
		fi;
		h = 0
	:: else -> skip                         /* an old watch */
	fi
}

inline spawn_done(j, ok)                /* spawn_io_complete */
{
	vproc = V_NONE;
	if
	:: !ok ->
		state = S_SHUTOFF;
		if
		:: holder == j -> finish(j, C_FAILED)
		:: holder != 0 && kind[holder] == J_DESTROY -> h = holder; finish(h, C_OK); h = 0
		:: else
		fi;
		kill_on_spawn = 0
	:: else ->                              /* a process exists: ours now */
		vproc = V_RUNNING;
		pw = gen;                       /* watch_pid */
		if
		:: proc == P_EXITED -> send_dom(M_EXIT, gen, 0, 0)     /* fires at once */
		:: else
		fi;
		if
		:: kill_on_spawn || holder != j ->
			kill_on_spawn = 0;
			killing = 1;
			kill_qemu()
		:: else ->                      /* monitor, then "cont" */
			phase[j] = PH_CMD;
			assert(nfull(qcmd));
			qcmd!j, gen, CMD_CONT
		fi
	fi
}

inline io_done(k, j, ok)                /* io_complete_call */
{
	/*
	 * The completion runs first, the strand still busy: an operation it
	 * queues goes behind those waiting, and a retire (stop_self) drops the
	 * queue before anything in it starts.  Then the next one starts.
	 */
	if
	:: k == IO_SPAWN -> spawn_done(j, ok)
	:: k == IO_GONE ->                      /* gone_io_complete */
		if
		:: j != 0 && holder == j -> finish(j, C_OK)
		:: else
		fi
	:: k == IO_UNLINK ->
#ifdef OLD_UNDEFINE
		assert(0)
#else
		undefine_done(j, ok)
#endif
	fi;
	io_busy = 0;
	if
	:: niq > 0 ->
		io_busy = 1;
		off!iqk[0], iqj[0];
		for (x : 0 .. NIO - 2) {
			iqk[x] = iqk[x + 1]; iqj[x] = iqj[x + 1]
		};
		x = 0;
		niq--;
		iqk[niq] = 0;
		iqj[niq] = 0
	:: else
	fi
}

active proctype Domain()
{
	mtype k;
	byte a, b, c, i, j, h, w, x, mn;
end:
	do
	:: atomic {
		dmbx?k, a, b, c;
		if
		:: closed ->                    /* dropped: -ESHUTDOWN */
			if
			:: k == M_JOB -> answer(a, C_GONE); WITNESS(11)  /* job_msg_drop */
			:: else
			fi
		:: else ->
			if
			:: k == M_STOP -> stop_self()
			:: k == M_JOB && now > deadline[a] ->
				fail_busy(a)            /* dom_expire */
			:: else ->
				if
				:: k == M_JOB -> handle_job(a)
				:: k == M_DEADLINE -> handle_deadline(a)
				:: k == M_STEP -> handle_step(a, b, c)
				:: k == M_NOTE -> on_note(a)
				:: k == M_EXIT -> on_exit(a)
				:: k == M_IODONE -> io_done(a, b, c)
				fi;
				kick();
				rearm()
			fi
		fi;
		/* between turns */
		assert(holder != 0 || nw == 0);
		assert(closed || (state == S_SHUTOFF) == (vproc == V_NONE));
		snap_state = state;             /* dom_publish */
		snap_holder = holder;
		k = 0; a = 0; b = 0; c = 0
	}
	od
}

/* ---- the strand, QEMU, its monitor, the timer thread, the clock ---- */

active proctype Offload()
{
	byte k, j;
	bit ok;
end:
	do
	:: atomic {
		off?k, j;
		ok = 1;
		if
		:: k == IO_SPAWN ->
			if
			:: assert(proc == P_NONE);      /* posix_spawn: it exists now */
				gen++;
				proc = P_UP;
				printf("  tick %d: QEMU %d spawned\n", now, gen);
				will_exit = 0;
				if
				:: CRASH -> may_crash = 1
				:: may_crash = 0
				fi
			:: IOFAIL -> ok = 0
			fi
		:: k == IO_UNLINK ->
			if
			:: disk = 0;                    /* durable_unlink */
				printf("  tick %d: definition file removed\n", now)
			:: IOFAIL -> ok = 0
			fi
		:: k == IO_GONE -> skip
		fi
	};
	atomic {                                /* dom_call(io_complete_call) */
		send_dom(M_IODONE, k, j, ok);
		k = 0; j = 0; ok = 0
	}
	od
}

active proctype Qemu()
{
	byte j, g, r;
	mtype c;
end:
	do
	:: atomic {
		qcmd?j, g, c;
		if
		:: proc == P_UP && g == gen ->
			if
			:: r = 1                        /* done */
			:: c == CMD_POWERDOWN ->        /* accepted; the guest ignores it */
				r = 1;
				c = CMD_CONT
			:: r = 2                        /* refused */
			:: r = 0                        /* never answers */
			fi;
			if
			:: r != 0 -> assert(nfull(mreply)); mreply!j, g, r == 1
			:: else
			fi;
			if
			:: r == 1 && c == CMD_POWERDOWN ->
				will_exit = 1;          /* the guest powers off: */
				assert(nfull(mreply));
				mreply!0, g, 1          /* the SHUTDOWN event, then the exit */
			:: else
			fi
		:: else -> skip                 /* a dead process answers nothing */
		fi;
		j = 0; g = 0; c = 0; r = 0
	}
	:: atomic { proc == P_KILLED -> exited() }
	:: atomic { proc == P_UP && (will_exit || may_crash) -> exited() }
	od
}

active proctype Monitor()
{
	byte j, g;
	bit ok;
end:
	do
	:: atomic {
		mreply?j, g, ok ->
		if
		:: j != 0 -> send_dom(M_STEP, j, g, ok)
		:: else -> send_dom(M_NOTE, g, 0, 0)    /* vm_on_note */
		fi;
		j = 0; g = 0; ok = 0
	}
	od
}

inline fire(t)
{
	atomic {
		t != 0 && t <= now ->
		send_dom(M_DEADLINE, t, 0, 0);
		t = 0
	}
}

active proctype Timer()
{
end:
	do
	:: fire(tmr[0])
	:: fire(tmr[1])
	:: fire(tmr[2])
	od
}

active proctype Clock()
{
	do
	:: atomic { now < TMAX && (now < SUBMIT_MAX || ndone == NCLIENT) -> now++ }
	:: now == TMAX -> break
	od
}

/* ---- callers ---- */

proctype Client(byte j; byte kd)
{
	atomic {
		if
		:: kd == 0 ->                   /* one of start, shutdown, destroy */
			if
			:: kind[j] = J_START
			:: kind[j] = J_SHUTDOWN
			:: kind[j] = J_DESTROY
			fi
		:: else -> kind[j] = kd
		fi;
		deadline[j] = now + TO
	};
	if
	:: !registered -> answer(j, C_NODOM)   /* no such domain */
	:: else ->
		if
		:: closed -> answer(j, C_NODOM)        /* -ESHUTDOWN: the caller's */
		:: else ->
			atomic {                        /* appended (maybe after the close) */
				printf("  tick %d: job %d (kind %d) sent to the domain\n", now, j, kind[j]);
				nsub++;
				seq[j] = nsub;
				assert(nfull(dmbx));
				dmbx!M_JOB, j, 0, 0
			}
		fi
	fi;
	ndone++
}

#ifdef OLD_UNDEFINE
/* vm_undefine, old: decided on the caller's thread from the snapshot. */
proctype OldUndefine(byte j)
{
	byte st, h;

	kind[j] = J_UNDEFINE;
	atomic { st = snap_state; h = snap_holder };    /* dom_snap_rcu */
	if
	:: st == S_SHUTOFF && h == 0 ->
		if
		:: atomic {
			registered ->
			registered = 0;         /* reg_del; unlink the file */
			disk = 0;
			undefined = 1;
			udj = j;
			printf("  tick %d: undefine (old, caller's thread): snapshot shows shutoff, no job: domain removed, stop sent\n", now)
		   };
			undefining = 1;
			atomic { send_dom(M_STOP, 0, 0, 0) };   /* actor_stop */
			atomic { answer(j, C_OK) }
		:: atomic { !registered -> answer(j, C_NODOM) }
		fi
	:: else -> atomic { answer(j, C_STATE) }
	fi;
	ndone++
}
#endif

#if SHUTDOWN
/* The daemon shutting down stops the actor. */
active proctype Daemon()
{
	if
	:: atomic { send_dom(M_STOP, 0, 0, 0) }
	:: skip
	fi
}
#endif

/*
 * P7 and P1 as invariants of every state: this process can move only in a
 * state that breaks one, and then fails.
 */
active proctype Invariants()
{
end:
	atomic {
		(undefined && proc != P_NONE) || nheld > 1 ->
		printf("  VIOLATION: undefined=%d QEMU process state=%d holders=%d\n",
		       undefined, proc, nheld);
		assert(!undefined || proc == P_NONE);   /* P7 no orphan */
		assert(nheld <= 1)                      /* P1 */
	}
}

/* When nothing can move any more. */
active proctype Checker()
{
	byte j;

	timeout ->
	atomic {
		assert(now == TMAX);
		assert(holder == 0 && nw == 0);         /* P2: nobody waits forever */
		for (j : 1 .. NJ) {
			assert(answered[j])             /* P6 */
		};
		assert(!undefined || proc == P_NONE);   /* P7 */
#ifdef CHECK_DISK
		assert(disk == registered)              /* P8 */
#endif
	}
}

init
{
	atomic {
		run Client(1, J_START);
#ifdef OLD_UNDEFINE
		run OldUndefine(2);
#else
		run Client(2, J_UNDEFINE);
#endif
		run Client(3, KIND3);
#if NCLIENT >= 4
		run Client(4, 0);
#endif
	}
}
