# Cython view of include/chair_core.h (the structs shared across the seam). Keep in step with it.
from libc.stdint cimport int32_t, int64_t, uint32_t

cdef extern from "chair_core.h" nogil:
    enum:
        CHAIR_AXIS_CARRIAGE
        CHAIR_AXIS_WIDTH
        CHAIR_AXIS_DEPTH
        CHAIR_AXIS_KNEADING
        CHAIR_AXIS_TAPPING
        CHAIR_N_AXES
        CHAIR_N_POSITION_AXES
        CHAIR_N_MOTORS
    enum:
        CHAIR_ZONE_NONE
        CHAIR_ZONE_GLUTES
        CHAIR_ZONE_SACRUM
        CHAIR_ZONE_LUMBAR
        CHAIR_ZONE_MID_BACK
        CHAIR_ZONE_UPPER_BACK
        CHAIR_ZONE_SHOULDERS
        CHAIR_ZONE_NECK
        CHAIR_N_ZONES
    enum:
        CHAIR_BOARD_WATCHDOG
        CHAIR_BOARD_OVERCURRENT
        CHAIR_BOARD_OVERTEMP
        CHAIR_BOARD_LINK_LOST
    enum:
        CHAIR_CMD_HEARTBEAT
        CHAIR_CMD_MOVE
        CHAIR_CMD_RATE
        CHAIR_CMD_HEAT
        CHAIR_CMD_BRAKE
        CHAIR_CMD_ESTOP
        CHAIR_CMD_RESET
        CHAIR_CMD_BODY
        CHAIR_CMD_PROGRAM
        CHAIR_CMD_CLEAR_STATS
        CHAIR_CMD_FAULT
        CHAIR_CMD_SCAN
        CHAIR_CMD_CONTOUR
        CHAIR_CMD_SURFACE
        CHAIR_CMD_PRESS
    enum:
        CHAIR_FAULT_NONE
        CHAIR_FAULT_TRACK_RANGE
        CHAIR_FAULT_BODY_RANGE
        CHAIR_FAULT_SPINE_CLEARANCE
        CHAIR_FAULT_ZONE_DEPTH
        CHAIR_FAULT_ZONE_TAPPING
        CHAIR_FAULT_ZONE_KNEADING
        CHAIR_FAULT_VELOCITY
        CHAIR_FAULT_ACCELERATION
        CHAIR_FAULT_OVER_TEMPERATURE
        CHAIR_FAULT_THERMISTOR
        CHAIR_FAULT_HEATER_NOT_HEATING
        CHAIR_FAULT_STALL
        CHAIR_FAULT_LIMIT_SWITCH
        CHAIR_FAULT_OVERCURRENT
        CHAIR_FAULT_SUPPLY_VOLTAGE
        CHAIR_FAULT_CONTROLLER_STALLED
        CHAIR_FAULT_LINK_LOST
        CHAIR_FAULT_BOARD
        CHAIR_FAULT_TRACKING
        CHAIR_FAULT_TAPPING_WIDTH
        CHAIR_FAULT_COMMAND
        CHAIR_FAULT_ZONE_LOAD
        CHAIR_N_FAULTS
    enum:
        CHAIR_EVT_FAULT
        CHAIR_EVT_ESTOP
        CHAIR_EVT_RESET
        CHAIR_EVT_AXIS_IDLE
        CHAIR_EVT_CONTACT
        CHAIR_EVT_OCCUPANCY
        CHAIR_EVT_ZONE
        CHAIR_EVT_HEATER_OFF
        CHAIR_EVT_AT_REST
        CHAIR_EVT_LINK
    enum:
        CHAIR_MODE_RUN
        CHAIR_MODE_BRAKE
        CHAIR_MODE_FAULT
        CHAIR_MODE_ESTOP

    ctypedef struct chair_setpoint:
        int64_t t_ns
        double pos_mm[3]
        double vel_mm_s[3]
        double knead_rpm
        double tap_hz
        double heater_duty
        int32_t enable
        int32_t seq

    ctypedef struct chair_status:
        int64_t t_ns
        double pos_mm[3]
        double knead_rpm
        double tap_hz
        double current_a[5]
        double thermistor_c
        double supply_v
        int32_t limit_low
        int32_t limit_high
        int32_t arm_contact
        int32_t seat_occupied
        uint32_t board_faults
        int32_t link_ok
        int64_t link_stale_ns
        double depth_load_a

    ctypedef struct chair_axis_limits:
        double min_mm, max_mm
        double v_max, a_max, j_max
        double estop_a_max, estop_j_max

    ctypedef struct chair_limits:
        int64_t period_ns
        chair_axis_limits axis[5]
        double limit_tolerance_rel
        double eccentricity_mm
        double contact_radius_mm
        double spine_half_width_mm
        double spine_margin_mm
        double zone_depth_max_mm[7]
        double zone_tap_max_hz[7]
        double zone_knead_max_rpm[7]
        double retracted_depth_mm
        double heat_trip_c
        double heat_max_target_c
        double thermistor_min_c, thermistor_max_c
        int64_t heater_refresh_ns
        double heater_kp, heater_ki
        double not_heating_duty
        double not_heating_rise_c
        int64_t not_heating_window_ns
        int64_t stall_ns
        double stall_min_mm
        double overcurrent_a[5]
        int64_t overcurrent_ns
        double supply_min_v, supply_max_v
        int64_t supply_ns
        int64_t thermistor_ns
        int64_t occupant_ns
        int64_t link_lost_ns
        int64_t controller_watchdog_ns
        double overtravel_mm
        double tracking_error_max_mm[3]
        double contour_load_a_per_mm
        double contour_touch_a[2]
        double contour_contact_min_a
        double contour_gain_per_s
        double contour_sample_mm
        double contour_reach_mm
        double contour_margin_mm
        double contour_floor_mm
        double contour_search_mm_s
        int64_t contour_touch_samples
        int64_t zone_load_ns

    ctypedef struct chair_command:
        int32_t kind
        int32_t axis
        int64_t at_ns
        int64_t hold_ns
        int64_t sent_ns
        double value[8]

    ctypedef struct chair_event:
        int64_t t_ns
        int32_t kind
        int32_t code
        int32_t axis
        int32_t reserved
        double value
        double limit

    ctypedef struct chair_telemetry:
        int64_t t_ns
        int32_t mode
        int32_t fault
        int32_t zone
        int32_t flags
        double y_mm, v_mm_s, a_mm_s2
        double width_mm, left_x_mm, right_x_mm, depth_mm
        double knead_rpm, tap_hz
        double heat_target_c, heat_c, heater_duty
        double y_meas_mm
        double surface_mm
        double press_mm
        double depth_load_a
        double depth_meas_mm

    ctypedef struct chair_surface_sample:
        int64_t t_ns
        double y_mm
        double depth_mm
        double load_a
        double target_a
