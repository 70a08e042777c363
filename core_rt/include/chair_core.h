/*
 * chair_core.h — the plain-C data shared by the real-time core, the hardware seam and the rings.
 *
 * Everything that crosses the seam between the tick and the world is a fixed-size struct of
 * doubles and int32/int64, so it can be copied through lock-free rings and over a board link
 * without allocation. Time is int64 nanoseconds (CLOCK_MONOTONIC in real time, virtual otherwise).
 */
#ifndef CHAIR_CORE_H
#define CHAIR_CORE_H

#include <stdint.h>

/* ---- axes -------------------------------------------------------------------------------- */
enum chair_axis {
    CHAIR_AXIS_CARRIAGE = 0, /* y along the track, mm */
    CHAIR_AXIS_WIDTH = 1,    /* head spacing centre to centre, mm */
    CHAIR_AXIS_DEPTH = 2,    /* protrusion of the heads, mm */
    CHAIR_AXIS_KNEADING = 3, /* rate axis: rpm (signed: + cw, - ccw) */
    CHAIR_AXIS_TAPPING = 4,  /* rate axis: Hz */
    CHAIR_N_AXES = 5
};
#define CHAIR_N_POSITION_AXES 3
#define CHAIR_N_MOTORS 5 /* carriage, width, depth, kneading, tapping */

/* ---- zones (bottom to top) ---------------------------------------------------------------- */
enum chair_zone {
    CHAIR_ZONE_NONE = -1,
    CHAIR_ZONE_GLUTES = 0,
    CHAIR_ZONE_SACRUM = 1,
    CHAIR_ZONE_LUMBAR = 2,
    CHAIR_ZONE_MID_BACK = 3,
    CHAIR_ZONE_UPPER_BACK = 4,
    CHAIR_ZONE_SHOULDERS = 5,
    CHAIR_ZONE_NECK = 6,
    CHAIR_N_ZONES = 7
};

/* ---- controller -> hardware, once per tick ------------------------------------------------ */
typedef struct {
    int64_t t_ns;
    double pos_mm[CHAIR_N_POSITION_AXES];   /* position setpoints */
    double vel_mm_s[CHAIR_N_POSITION_AXES]; /* velocity feed-forward */
    double knead_rpm;                       /* signed: + cw, - ccw */
    double tap_hz;
    double heater_duty; /* 0..1 */
    int32_t enable;     /* 0: motors de-energised and heater off */
    int32_t seq;        /* tick counter, low 31 bits (board links echo it) */
} chair_setpoint;

/* ---- hardware -> controller, once per tick ------------------------------------------------ */
enum chair_board_fault_bits {
    CHAIR_BOARD_WATCHDOG = 1u << 0,   /* board stopped on its own watchdog */
    CHAIR_BOARD_OVERCURRENT = 1u << 1,
    CHAIR_BOARD_OVERTEMP = 1u << 2,
    CHAIR_BOARD_LINK_LOST = 1u << 3,  /* set by a link driver, never by a sim plant */
};

typedef struct {
    int64_t t_ns;
    double pos_mm[CHAIR_N_POSITION_AXES]; /* encoders */
    double knead_rpm;                     /* measured rate of the kneading motor */
    double tap_hz;                        /* measured rate of the tapping motor */
    double current_a[CHAIR_N_MOTORS];     /* motor currents */
    double thermistor_c;                  /* pad thermistor */
    double supply_v;
    int32_t limit_low;    /* track limit switch at y = track_min */
    int32_t limit_high;   /* track limit switch at y = track_max */
    int32_t arm_contact;  /* roller-arm contact switch: 1 = body touching */
    int32_t seat_occupied;
    uint32_t board_faults; /* chair_board_fault_bits */
    int32_t link_ok;       /* 1 when the status is fresh (always 1 in-process) */
    int64_t link_stale_ns; /* how long the status has been stale, on the link's own clock
                              (0 when fresh; -1: the hardware cannot say, and the guard
                              times it from its own ticks); docs/core.md, link_lost */
    double depth_load_a;   /* the depth drive's load: the current pressing against the body
                              draws, net of the drive's own (0 off the body, 0 with the drives
                              off); NaN: the board does not measure it (docs/simulator.md) */
} chair_status;

/* ---- limits the core enforces (filled from the one config model, core_rt.config) ---------- */
typedef struct {
    double min_mm, max_mm;           /* position axes: range; rate axes: 0..max */
    double v_max, a_max, j_max;      /* normal motion limits (units/s, /s², /s³) */
    double estop_a_max, estop_j_max; /* emergency braking limits */
} chair_axis_limits;

typedef struct {
    int64_t period_ns;
    chair_axis_limits axis[CHAIR_N_AXES];
    double limit_tolerance_rel; /* relative tolerance on v/a checks (float round-off only) */
    /* spine */
    double eccentricity_mm;       /* kneading orbit radius */
    double contact_radius_mm;
    double spine_half_width_mm;
    double spine_margin_mm;
    /* per-zone caps */
    double zone_depth_max_mm[CHAIR_N_ZONES];
    double zone_tap_max_hz[CHAIR_N_ZONES];
    double zone_knead_max_rpm[CHAIR_N_ZONES];
    double retracted_depth_mm; /* at or below this depth the heads do not press */
    /* heat */
    double heat_trip_c;
    double heat_max_target_c;  /* highest target the heater may be given */
    double thermistor_min_c, thermistor_max_c;
    int64_t heater_refresh_ns;     /* heater output off if its target is not refreshed */
    double heater_kp, heater_ki;   /* PI on the pad thermistor, duty per °C, per °C·s */
    double not_heating_duty;       /* "high duty" threshold for the not-heating check */
    double not_heating_rise_c;
    int64_t not_heating_window_ns;
    /* faults */
    int64_t stall_ns;
    double stall_min_mm;        /* setpoint travel over which the encoder must follow */
    double overcurrent_a[CHAIR_N_MOTORS];
    int64_t overcurrent_ns;
    double supply_min_v, supply_max_v;
    int64_t supply_ns;
    int64_t thermistor_ns;
    int64_t occupant_ns;
    int64_t link_lost_ns;
    int64_t controller_watchdog_ns;
    double overtravel_mm;      /* carriage encoder this far past a track end: limit fault */
    double tracking_error_max_mm[CHAIR_N_POSITION_AXES]; /* measured vs commanded position */
    /* the contour scan: the depth axis follows the skin by its load (docs/core.md) */
    double contour_load_a_per_mm; /* the depth load per mm pressed into the reference tissue */
    double contour_touch_a[2];    /* load targets, alternated sample by sample */
    double contour_contact_min_a; /* below this load the heads are off the skin */
    double contour_gain_per_s;    /* depth speed per mm of missing press */
    double contour_sample_mm;     /* one surface sample per this much carriage travel */
    double contour_reach_mm;      /* never deeper than the last skin touched + this */
    double contour_margin_mm;     /* stay this far below the depth axis's maximum */
    double contour_floor_mm;      /* ... and this far above its minimum */
    double contour_search_mm_s;   /* off the skin, the depth reaches for it this fast */
    int64_t contour_touch_samples; /* the touch load alternates after this many samples */
    /* pressing relative to the surface (docs/core.md) */
    int64_t zone_load_ns;         /* the depth load above its zone's bound this long: a fault */
} chair_limits;

/* ---- commands into the core (asyncio -> tick) ---------------------------------------------- */
enum chair_command_kind {
    CHAIR_CMD_HEARTBEAT = 0,
    CHAIR_CMD_MOVE = 1,      /* axis, value[0]=goal, [1]=v_max, [2]=a_max, [3]=j_max; hold_ns after */
    CHAIR_CMD_RATE = 2,      /* axis (kneading|tapping), value[0]=target rate (signed rpm / Hz) */
    CHAIR_CMD_HEAT = 3,      /* value[0]=target °C (0 = off); also refreshes the heater watchdog */
    CHAIR_CMD_BRAKE = 4,     /* brake every axis to rest with normal limits, drop queued moves */
    CHAIR_CMD_ESTOP = 5,     /* latched: emergency brake, heater off */
    CHAIR_CMD_RESET = 6,     /* clear a fault/e-stop latch (only when at rest) */
    CHAIR_CMD_BODY = 7,      /* value[0..7] = zone boundaries (8 edges, bottom to top); axis=1 set, 0 clear */
    CHAIR_CMD_PROGRAM = 8,   /* axis=1: program running (zone accounting on), 0: off */
    CHAIR_CMD_CLEAR_STATS = 9,
    CHAIR_CMD_FAULT = 10,    /* raise a fault from above: axis = chair_fault code */
    CHAIR_CMD_SCAN = 11,     /* axis=1: report arm-contact changes (body scan), 0: stop */
    CHAIR_CMD_CONTOUR = 12,  /* axis=1: the depth axis follows the skin, surface samples
                                reported; 0: stop (the depth axis brakes to rest) */
    CHAIR_CMD_SURFACE = 13,  /* the scanned surface, in pieces: axis=k >= 0: control points
                                8k..8k+7 = value[0..7]; axis=-1: the zones' load bounds (A) =
                                value[0..6]; axis=-2: commit value[2] control points (0: no
                                surface) from y0 = value[0], value[1] mm apart */
    CHAIR_CMD_PRESS = 14,    /* axis=depth, value[0]=1: depth goals are press depths relative
                                to the surface from here; 0: absolute again. Queued with the
                                depth's moves; taken with the carriage and the depth at rest */
};

typedef struct {
    int32_t kind;
    int32_t axis;
    int64_t at_ns;   /* MOVE/RATE/HEAT: not before this core time (0 = at once); keeps real-time and
                        virtual-time runs identical when commands are sent ahead of their time */
    int64_t hold_ns; /* MOVE: the axis stays busy this long after reaching the goal */
    int64_t sent_ns; /* CLOCK_MONOTONIC when sent (command-to-actuator latency), 0 if unknown */
    double value[8];
} chair_command;

/* ---- faults ------------------------------------------------------------------------------- */
enum chair_fault {
    CHAIR_FAULT_NONE = 0,
    CHAIR_FAULT_TRACK_RANGE = 1,        /* setpoint or encoder outside the track */
    CHAIR_FAULT_BODY_RANGE = 2,         /* pressing above the neck zone's top */
    CHAIR_FAULT_SPINE_CLEARANCE = 3,    /* a contact patch inside the spine keep-out band */
    CHAIR_FAULT_ZONE_DEPTH = 4,
    CHAIR_FAULT_ZONE_TAPPING = 5,
    CHAIR_FAULT_ZONE_KNEADING = 6,
    CHAIR_FAULT_VELOCITY = 7,
    CHAIR_FAULT_ACCELERATION = 8,
    CHAIR_FAULT_OVER_TEMPERATURE = 9,   /* pad >= trip */
    CHAIR_FAULT_THERMISTOR = 10,        /* open/short: reading out of range */
    CHAIR_FAULT_HEATER_NOT_HEATING = 11,
    CHAIR_FAULT_STALL = 12,
    CHAIR_FAULT_LIMIT_SWITCH = 13,      /* both limit switches, or travel past a limit */
    CHAIR_FAULT_OVERCURRENT = 14,
    CHAIR_FAULT_SUPPLY_VOLTAGE = 15,
    CHAIR_FAULT_CONTROLLER_STALLED = 16, /* watchdog: asyncio side stopped feeding the core */
    CHAIR_FAULT_LINK_LOST = 17,
    CHAIR_FAULT_BOARD = 18,              /* the board reported a fault of its own */
    CHAIR_FAULT_TRACKING = 19,           /* encoder far from setpoint */
    CHAIR_FAULT_TAPPING_WIDTH = 20,      /* tapping while the width axis is still moving */
    CHAIR_FAULT_COMMAND = 21,            /* an invalid command reached the core */
    CHAIR_FAULT_ZONE_LOAD = 22,          /* the depth drive's load above its zone's bound */
    CHAIR_N_FAULTS = 23
};

/* ---- events out of the core (tick -> asyncio) ---------------------------------------------- */
enum chair_event_kind {
    CHAIR_EVT_FAULT = 1,      /* code = chair_fault, value = offending value, limit = its limit,
                                 axis = the axis (or motor) it is about, -1 if none */
    CHAIR_EVT_ESTOP = 2,      /* code = the fault latched before, 0 if none */
    CHAIR_EVT_RESET = 3,      /* code = 1 accepted, 0 refused (still moving) */
    CHAIR_EVT_AXIS_IDLE = 4,  /* code = axis = the axis whose queue ran empty; value = where it is */
    CHAIR_EVT_CONTACT = 5,    /* code = new arm contact (0/1), value = measured carriage y_mm */
    CHAIR_EVT_OCCUPANCY = 6,  /* code = 0 occupant gone (debounced), 1 back */
    CHAIR_EVT_ZONE = 7,       /* code = zone entered (program running only), value = y_mm */
    CHAIR_EVT_HEATER_OFF = 8, /* code: 1 refresh timeout */
    CHAIR_EVT_AT_REST = 9,    /* after BRAKE/ESTOP/fault: every axis at rest; code = mode,
                                 value = carriage y_mm */
    CHAIR_EVT_LINK = 10,      /* code = 1 link back, 0 lost */
};

typedef struct {
    int64_t t_ns;
    int32_t kind;  /* chair_event_kind */
    int32_t code;
    int32_t axis;  /* chair_axis the event is about, -1 if none */
    int32_t reserved;
    double value;
    double limit;
} chair_event;

/* ---- telemetry (tick -> asyncio at the telemetry rate) ------------------------------------ */
enum chair_core_mode {
    CHAIR_MODE_RUN = 0,   /* following commands */
    CHAIR_MODE_BRAKE = 1, /* braking to rest after BRAKE */
    CHAIR_MODE_FAULT = 2, /* latched fault */
    CHAIR_MODE_ESTOP = 3  /* latched e-stop */
};

typedef struct {
    int64_t t_ns;
    int32_t mode;
    int32_t fault;
    int32_t zone;
    int32_t flags; /* bit0 arm contact, bit1 seat occupied, bit2 heater on */
    double y_mm, v_mm_s, a_mm_s2;
    double width_mm, left_x_mm, right_x_mm, depth_mm;
    double knead_rpm, tap_hz;
    double heat_target_c, heat_c, heater_duty;
    double y_meas_mm;
    double surface_mm;   /* the scanned surface under the carriage (NaN: none) */
    double press_mm;     /* depth_mm - surface_mm (NaN: no surface) */
    double depth_load_a; /* the depth drive's load (chair_status.depth_load_a) */
    double depth_meas_mm; /* the depth encoder */
} chair_telemetry;

/* ---- contour scan samples (tick -> asyncio, one per contour_sample_mm of carriage travel) --- */
typedef struct {
    int64_t t_ns;
    double y_mm;     /* carriage encoder */
    double depth_mm; /* depth encoder */
    double load_a;   /* the depth drive's load (chair_status.depth_load_a) */
    double target_a; /* the load the depth axis was following */
} chair_surface_sample;

#endif
