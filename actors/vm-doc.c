/* SPDX-License-Identifier: MIT */
/*
 * vm-doc: the names and meanings of what a client sees of a domain: its
 * states, the reasons the VM layer gives for them, the monitor's states
 * and the events.  The code uses the enums (vm.h, domain.h); docs/API.md
 * and api.info are generated from these rows, so a reason cannot be
 * emitted without being documented.
 */
#include "actors/vm.h"

#include "common/util.h"

static const struct vm_doc reasons[VR_COUNT] = {
	[VR_DEFINED] = { "defined", "shutoff",
			 "defined (or loaded at corrald's start) and not started since" },
	[VR_USER] = { "user", "starting, running, paused",
		      "a call asked for it: `start` (starting), `resume` (running), `suspend` "
		      "(paused)" },
	[VR_AUTOSTART] = { "autostart", "starting",
			   "corrald started it at its own start (the domain is marked "
			   "autostart)" },
	[VR_BOOTED] = { "booted", "running",
			"a start finished: the guest's CPUs run for the first time (also a "
			"start cut short by a crash of corrald, finished after its restart)" },
	[VR_PAUSED] = { "paused", "paused",
			"QEMU stopped the guest's CPUs, not at a corral job's request (a `stop` "
			"sent through `qmp`, an I/O error, a suspend whose call had already "
			"timed out)" },
	[VR_UNPAUSED] = { "unpaused", "running",
			  "QEMU resumed the guest's CPUs, not at a corral job's request (a "
			  "`cont` sent through `qmp`, a resume whose call had already timed "
			  "out)" },
	[VR_RESET] = { "reset", "running, paused",
		       "a hardware reset asked by the host: the `reset` call, or a "
		       "`system_reset` sent through `qmp`" },
	[VR_REBOOTED] = { "rebooted", "running, paused",
			  "the `reboot` call: a hardware reset, or (reboot \"acpi\") the "
			  "guest's power-off turned into a reset" },
	[VR_GUEST_RESET] = { "guest-reset", "running, paused",
			     "the guest reset itself (its own reboot, a triple fault); one event "
			     "per reset QEMU reports, so a guest's reboot may show two: its "
			     "firmware resets the machine again as it starts" },
	[VR_GUEST_SUSPEND] = { "guest-suspend", "pmsuspended",
			       "the guest suspended itself to RAM" },
	[VR_WAKEUP] = { "wakeup", "running", "the guest woke from its suspend to RAM" },
	[VR_SHUTDOWN] = { "shutdown", "shutting-down, shutoff",
			  "the guest powered off in answer to the `shutdown` call (shutting-"
			  "down until QEMU has exited)" },
	[VR_GUEST_SHUTDOWN] = { "guest-shutdown", "shutting-down, shutoff",
				"the guest powered off on its own (or in answer to a "
				"`system_powerdown` sent through `qmp`)" },
	[VR_QUIT] = { "quit", "shutting-down, shutoff",
		      "QEMU was told to quit, not by a corral job (a `quit` sent through "
		      "`qmp`, a signal such as SIGTERM)" },
	[VR_EXITED] = { "exited", "shutoff",
			"QEMU exited without saying why: status 0 and no power-off seen, or a "
			"QEMU that is not corral's child (attached, or adopted after a "
			"restart), whose exit status cannot be known" },
	[VR_DESTROYED] = { "destroyed", "shutoff",
			   "killed by corral: the `destroy` call, or `shutdown` with `force` "
			   "at its deadline" },
	[VR_DETACHED] = { "detached", "shutoff",
			  "`destroy` let go of an attached process that is not an allowed "
			  "emulator (it is not killed)" },
	[VR_FAILED] = { "failed", "shutoff",
			"a start (or an attach) failed; the call's error says why" },
	[VR_ENDED_WHILE_AWAY] = { "ended-while-away", "shutoff",
				  "its QEMU ended while corrald was not running" },
	[VR_CRASHED] = { "crashed", "crashed",
			 "QEMU died of a signal other than SIGKILL, or exited with a non-zero "
			 "status" },
	[VR_KILLED] = { "killed", "crashed", "QEMU was killed (SIGKILL), not by corral" },
	[VR_PANICKED] = { "panicked", "crashed", "the guest reported a panic" },
	[VR_ATTACHED] = { "attached", "running, paused, shutting-down, pmsuspended",
			  "`attach` took over a running QEMU, found in this state" },
	[VR_REATTACHED] = { "reattached", "running, paused, shutting-down, pmsuspended",
			    "corrald found its QEMU again after a restart" },
	[VR_SYNCED] = { "synced", "running, paused, shutting-down, pmsuspended, crashed",
			"a monitor that was lost came back and QEMU's status differed: the "
			"change happened while corral could not see it" },
	[VR_SAVING] = { "saving", "paused",
			"a `save` paused the guest and QEMU writes its state; if the save "
			"fails, the guest runs again (reason `unpaused`)" },
	[VR_SAVED] = { "saved", "shutoff",
		       "a `save` wrote the guest's state to its file, and QEMU ended; `restore` "
		       "starts it from there" },
	[VR_RESTORED] = { "restored", "running",
			  "a `restore` loaded the saved state into a new QEMU and the guest runs "
			  "on where it was" },
};

static const struct vm_doc states[DOM_STATE_COUNT] = {
	[DOM_SHUTOFF] = { "shutoff", NULL, "no QEMU" },
	[DOM_STARTING] = { "starting", NULL,
			   "QEMU is being spawned and its monitor connected; the guest has "
			   "not run yet" },
	[DOM_RUNNING] = { "running", NULL, "the guest's CPUs run" },
	[DOM_PAUSED] = { "paused", NULL, "QEMU runs, the guest's CPUs are stopped" },
	[DOM_SHUTTING_DOWN] = { "shutting-down", NULL,
				"the guest powered off (QEMU's SHUTDOWN) and QEMU is exiting" },
	[DOM_CRASHED] = { "crashed", NULL,
			  "QEMU died abnormally, or the guest panicked (QEMU may still run: "
			  "destroy ends it)" },
	[DOM_PMSUSPENDED] = { "pmsuspended", NULL, "the guest suspended itself to RAM" },
};

static const struct vm_doc monitors[] = {
	{ "none", NULL, "no monitor: no QEMU, or its QEMU is exiting (a normal exit closes "
	  "the monitor first; that is not a failure)" },
	{ "connecting", NULL, "connected, QMP's greeting and capabilities not done yet" },
	{ "ok", NULL, "commands are answered" },
	{ "unresponsive", NULL, "a command or heartbeat unanswered past the threshold" },
	{ "broken", NULL, "the connection failed while QEMU still runs (a protocol error, or "
	  "QEMU closed it); corral connects again in the background (1 s, 2 s, 4 s ... 30 s "
	  "apart)" },
};

static const struct vm_doc events[VE_COUNT] = {
	[VE_LIFECYCLE] = { "lifecycle", "`{state, reason}`",
			   "the domain's state or reason changed: exactly one per transition "
			   "(a reset keeps the state and changes the reason)" },
	[VE_MONITOR] = { "monitor", "`{state, reason?}`",
			 "the monitor of a running QEMU changed state (`broken` with the "
			 "reason, `unresponsive`, `ok` again); not sent for the monitor's "
			 "coming and going with QEMU itself" },
	[VE_DEFINED] = { "defined", "`{}`, or `{replaced: true}`",
			 "the domain was defined, or its definition replaced (for its next "
			 "start)" },
	[VE_UNDEFINED] = { "undefined", "`{}`", "the domain was removed" },
	[VE_AUTOSTART] = { "autostart", "`{autostart}`", "the domain's autostart mark changed" },
	[VE_DEVICE_ATTACHED] = { "device-attached",
				 "`attach-disk`'s or `attach-nic`'s result (without `live`, "
				 "`persistent`)",
				 "a device was plugged into the running guest" },
	[VE_DEVICE_DETACHED] = { "device-detached", "`{device, target | mac}`",
				 "QEMU said the guest let go of a device (DEVICE_DELETED): sent "
				 "whenever it happens, also after a detach's deadline" },
	[VE_PROGRESS] = { "progress", "`{job, status, elapsed_s, transferred_bytes?, "
			  "remaining_bytes?, total_bytes?, percent?}`",
			  "a `save` (or `restore`) under way, every 250 ms: QEMU's migration "
			  "status and figures; `info`'s `live.progress` holds the latest" },
};

static const struct vm_doc qemu_events = {
	"qemu.NAME", "QEMU's `data` (a map; `{}` when it has none) plus `qemu_timestamp` "
	"(QEMU's clock, Unix seconds)",
	"an event QEMU sent on its monitor, passed through as it is, e.g. `qemu.STOP`, "
	"`qemu.RESUME`, `qemu.RESET`, `qemu.POWERDOWN`, `qemu.SHUTDOWN`, `qemu.BLOCK_JOB_"
	"COMPLETED`: NAME is QEMU's (see QEMU's QMP reference). corral's own reading of "
	"them is the `lifecycle` event"
};

const char *vm_reason_name(enum vm_reason r)
{
	BUG_ON((unsigned)r >= VR_COUNT);
	return reasons[r].name;
}

const struct vm_doc *vm_reason_doc(enum vm_reason r)
{
	BUG_ON((unsigned)r >= VR_COUNT);
	return &reasons[r];
}

const struct vm_doc *vm_state_doc(enum dom_state s)
{
	BUG_ON((unsigned)s >= DOM_STATE_COUNT);
	return &states[s];
}

const struct vm_doc *vm_monitor_docs(size_t *n)
{
	*n = ARRAY_SIZE(monitors);
	return monitors;
}

const char *vm_event_name(enum vm_event e)
{
	BUG_ON((unsigned)e >= VE_COUNT);
	return events[e].name;
}

const struct vm_doc *vm_event_doc(enum vm_event e)
{
	BUG_ON((unsigned)e >= VE_COUNT);
	return &events[e];
}

const struct vm_doc *vm_qemu_event_doc(void)
{
	return &qemu_events;
}
