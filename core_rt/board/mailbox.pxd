# The tick side of a board link (see mailbox.pyx): lock-free mailboxes between the real-time tick and
# the link's I/O thread.
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from core_rt.chair_core cimport chair_setpoint, chair_status
from core_rt.hardware cimport Hardware

cdef extern from "link_mailbox.h":
    ctypedef struct link_sp_slot:
        chair_setpoint sp
        int64_t published_ns
    ctypedef struct link_st_slot:
        chair_status st
        int64_t confirmed_ns
        int64_t received_ns
    ctypedef struct link_sp_box:
        pass
    ctypedef struct link_st_box:
        pass
    ctypedef struct link_counters:
        uint64_t exchanges
        uint64_t stale
        uint64_t stale_episodes
        uint64_t recoveries
        uint64_t statuses_taken
    void link_sp_box_init(link_sp_box* b) nogil
    void link_sp_box_write(link_sp_box* b, const link_sp_slot* v) nogil
    int link_sp_box_read(link_sp_box* b) nogil
    const link_sp_slot* link_sp_box_front(const link_sp_box* b) nogil
    void link_st_box_init(link_st_box* b) nogil
    void link_st_box_write(link_st_box* b, const link_st_slot* v) nogil
    int link_st_box_read(link_st_box* b) nogil
    const link_st_slot* link_st_box_front(const link_st_box* b) nogil
    void link_count(uint64_t* c) nogil
    uint64_t link_stat(uint64_t* c) nogil
    int64_t link_now_ns() nogil



cdef extern from "board_io.h" nogil:
    enum:
        BIO_END_STOPPED
        BIO_END_EOF
        BIO_END_IO_ERROR
        BIO_END_REFUSED
        BIO_RTT_KEEP
        BIO_GAP_BIN_NS
        BIO_GAP_NBINS
    ctypedef struct bw_rx_counters:
        int64_t bytes, frames, garbage_bytes, resyncs, bad_length, bad_crc, unknown_type
        int64_t unexpected_type, duplicate, out_of_order, seq_gaps
    ctypedef struct bw_decoder:
        bw_rx_counters c
        unsigned expect
    ctypedef struct bw_hello_ack:
        uint16_t version, watchdog_ms
        uint32_t nonce
        uint16_t status_period_us, flags
        char board_id[17]
    ctypedef struct bio_counters:
        int64_t frames_out, setpoints_out, priming_out, hellos_out, bytes_out, tx_dropped_bytes
        int64_t frames_in, statuses_in, hello_acks_in, bytes_in, unmatched_echo
        int64_t stale_core_setpoints, late_sends, engages, disengages, board_watchdog_seen
        int64_t forced_off, forced_off_setpoints, goodbyes, goodbyes_echoed, refusals
        int64_t max_setpoint_gap_ns, max_status_gap_ns
        int64_t max_wake_late_ns, max_wake_late_at_ns, max_wake_late_vcsw, max_wake_late_ivcsw
        int64_t max_turn_ns
    ctypedef struct bio_link:
        int64_t period_ns, hello_retry_ns, max_age_ns, force_off_ns, goodbye_ns
        double engage_tol_mm, engage_max_speed_mm_s, engage_max_rpm, engage_max_hz
        int is_socket
        uint32_t nonce
        uint16_t tx_seq
        int stop
        link_sp_box* spbox
        link_st_box* stbox
        int acked, ready, engaged, connected
        int last_errno
        bw_hello_ack board
        char refused[160]
        double last_pos_mm[3]
        int64_t last_confirmed_ns
        bio_counters n
        bw_rx_counters rx
        int64_t rtt_ns[1]
        int64_t rtt_count
        int64_t sp_gap_hist[1]
        int64_t st_gap_hist[1]
        bw_decoder dec
    int bio_run(bio_link* io, int fd)
    ctypedef struct bw_setpoint:
        uint32_t seq
        double pos_mm[3]
        double vel_mm_s[3]
        double knead_rpm, tap_hz, heater_duty
        unsigned char enable, flags
    ctypedef struct bw_frame_view:
        unsigned char type
        uint16_t seq
        const unsigned char* payload
        int len
    ctypedef struct bw_status:
        uint32_t echo_seq, board_time_us
        double pos_mm[3]
        double knead_rpm, tap_hz
        double current_a[5]
        double thermistor_c, supply_v
        uint8_t switches, outputs
        uint16_t board_faults
        double depth_load_a
    void bw_unpack_status(const unsigned char* p, bw_status* s)
    uint16_t bw_crc16(const unsigned char* p, size_t n, uint16_t crc)
    void bw_pack_setpoint(unsigned char* p, const bw_setpoint* s)
    void bw_pack_hello(unsigned char* p, uint16_t version, uint16_t period_us, uint32_t nonce)
    int bw_frame(unsigned char* out, uint16_t seq, unsigned char type, const unsigned char* payload,
                 unsigned char len)
    void bw_decoder_init(bw_decoder* d, unsigned expect)
    int bw_feed(bw_decoder* d, const unsigned char* data, int n)
    int bw_next(bw_decoder* d, bw_frame_view* f)
    int64_t bio_load(const int64_t* p)
    bio_link* bio_new()
    void bio_free(bio_link* io)


cdef class LinkHardware(Hardware):
    cdef link_sp_box spbox          # tick -> I/O thread
    cdef link_st_box stbox          # I/O thread -> tick
    cdef link_st_slot cur           # the tick's copy of the latest status
    cdef link_counters n
    cdef int was_fresh
    cdef readonly int64_t stale_ns
    cdef bio_link* io               # the I/O thread's connection state (board_io.h)
