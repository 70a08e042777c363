# The simulated chair behind the hardware seam: core_rt.hardware.Hardware, stepped by the period.
# All state is plain C so that exchange() runs without the GIL and without allocation.
from libc.stdint cimport int32_t, int64_t, uint64_t

from core_rt.chair_core cimport chair_setpoint, chair_status
from core_rt.hardware cimport Hardware

cdef enum:
    SIM_MAX_FAULTS = 64
    SIM_BACK_N = 4097              # the back's tables: samples along the track (sim/back.py)

# A plant fault scheduled at at_ns after the epoch; kind is a SIM_FK_* code, target an axis/motor.
cdef struct SimFault:
    int64_t at_ns
    int32_t kind
    int32_t target

cdef class SimPlant(Hardware):
    cdef readonly object config    # core_rt.config.ChairConfig
    cdef readonly object params    # sim.model.PlantParams
    cdef readonly object seed
    cdef readonly double body_height_cm
    cdef list _specs               # FaultSpec of faults[], same order
    cdef list _session_specs       # session-level faults (estop, link_loss)

    # time
    cdef int64_t now_ns            # time the current state describes
    cdef int64_t epoch
    cdef int32_t epoch_set
    cdef int32_t nsub              # sub-steps of the position loops per period
    cdef double dt, h, inv_dt      # period and sub-step, s

    # position axes: carriage, width, depth
    cdef double p[3]
    cdef double v[3]
    cdef double a[3]               # last acceleration demand
    cdef double lo[3]
    cdef double hi[3]
    cdef double sp_lo[3]
    cdef double sp_hi[3]
    cdef double v_top[3]           # motor top speed
    cdef double kp[3]              # position loop gain, 1/s
    cdef double kv[3]              # velocity loop gain, 1/s
    cdef double asat[3]
    cdef double coast_dv[3]        # velocity lost per sub-step while de-energised
    cdef double i_hold[3]
    cdef double i_fric[3]
    cdef double i_acc[3]
    cdef double i_press[3]
    cdef double i_max[3]
    cdef int32_t stalled[3]
    cdef double enc_q, inv_enc_q

    # rate motors: kneading (rpm), tapping (Hz)
    cdef double rate[2]
    cdef double r_cmd_lo[2]
    cdef double r_cmd_hi[2]
    cdef double r_alpha[2]
    cdef double r_coast[2]
    cdef double r_hold[2]
    cdef double r_per[2]
    cdef double r_acc[2]
    cdef double r_press[2]
    cdef double r_max[2]

    # currents, over-current fault
    cdef double current[5]
    cdef int32_t oc[5]
    cdef double oc_a[5]

    # heater and pad
    cdef double pad_c, therm_c, heater_w_now
    cdef double heater_w, dt_over_c, g_amb, g_skin, t_amb, t_skin
    cdef double th_alpha, th_noise, th_open, th_short, fuse_c
    cdef int32_t fuse_blown, heater_dead, heater_stuck, therm_mode

    # supply
    cdef double supply_base, supply_nominal, supply_low, supply_high, supply_r, supply_noise

    # body and switches
    cdef double shoulder_mm, seat_mm, neck_mm, neck_load, contact_depth
    cdef double limit_lo_mm, limit_hi_mm
    cdef int32_t occupied, limit_both, contact, load_lost
    # the back's contour (sim/back.py): surface on the depth axis and tissue stiffness along y
    cdef int32_t contoured         # 0: the flat back of uniform tissue touching at depth 0
    cdef int32_t back_n
    cdef double back_y0, back_inv_step
    cdef double back_surface[SIM_BACK_N]
    cdef double back_stiffness[SIM_BACK_N]
    cdef double press_mm           # how far the heads press into the tissue now (true)
    cdef double load_a             # the depth drive's load now (true, without noise)
    cdef double back_offset_mm     # the whole back moved (lean_forward, shift faults)
    cdef double lean_forward_mm, shift_mm
    cdef double load_noise
    cdef uint64_t load_rng
    cdef readonly object back      # sim.back.BackContour, or None (the flat back)

    # faults
    cdef SimFault faults[SIM_MAX_FAULTS]
    cdef int32_t n_faults, next_fault
    cdef int64_t next_fault_ns

    cdef uint64_t rng
    cdef chair_setpoint last_sp    # for the Python-level step()

    cdef void _apply_due(self, int64_t rel_ns) noexcept nogil
