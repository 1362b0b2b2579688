/*
 * Strata test guest: a tiny freestanding x86-64 program that the native engine (strata-vmx)
 * and QEMU both boot as a PVH ELF. Plain integer instructions only: KVM PVM emulates
 * guest instructions and lacks SSE/AVX, xsave, cmpxchg16b, x87 and more.
 *
 * Serial (COM1, 16550): prints a ready marker, then echoes what it receives, line by line.
 * Commands (a whole input line): "poweroff", "reset" (i8042 reset line), "crash" (an
 * instruction KVM cannot run, or a triple fault on hardware virtualisation), "dirty N"
 * (write N pages from 16 MiB and print their checksum), "check" (re-read them and compare).
 * "blkr S" / "blkw S TEXT" read / write sector S of the virtio-blk disk (virtio-mmio at
 * 0xd0000000), polled.
 * Every input line is counted ("line N"), in guest memory.
 * Strata control port: writing 0xf4 powers off; IRQ 5 + reading 0xf5 bit 0 is a shutdown
 * request (the native engine's "power button").
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define COM1 0x3f8
#define PORT_POWEROFF 0xf4
#define PORT_EVENTS 0xf5
#define EVENT_SHUTDOWN 1
#define PIC1 0x20
#define PIC2 0xa0
#define IRQ_BASE 0x20
#define IRQ_SERIAL 4
#define IRQ_CTL 5

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* Bytes the transmit FIFO (16 deep once THRE is seen) still takes: each port access is a VM
 * exit, so poll the line status once per 16 bytes, not per byte. */
static u32 tx_room;

static void putc_(char c) {
    if (tx_room == 0) {
        while (!(inb(COM1 + 5) & 0x20)) {
        }
        tx_room = 16;
    }
    tx_room--;
    outb(COM1, (u8)c);
}
static void puts_(const char *s) {
    while (*s) {
        if (*s == '\n')
            putc_('\r');
        putc_(*s++);
    }
}
static void putu(u64 v) {
    char buf[24];
    int i = 0;
    do {
        buf[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i < 24);
    while (i)
        putc_(buf[--i]);
}

/* ---- interrupts ---- */

struct interrupt_frame;

struct idt_entry {
    u16 off0;
    u16 sel;
    u8 ist;
    u8 type;
    u16 off1;
    u32 off2;
    u32 zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));

struct idt_ptr {
    u16 limit;
    u64 base;
} __attribute__((packed));

static volatile u8 rx[256];
static volatile u32 rx_head, rx_tail;
static volatile int shutdown_requested;
static u32 lines_seen;

static void set_gate(int vec, void *handler) {
    u64 a = (u64)handler;
    idt[vec].off0 = (u16)a;
    idt[vec].sel = 0x08;
    idt[vec].ist = 0;
    idt[vec].type = 0x8e; /* present, DPL 0, 64-bit interrupt gate */
    idt[vec].off1 = (u16)(a >> 16);
    idt[vec].off2 = (u32)(a >> 32);
    idt[vec].zero = 0;
}

static void halt_forever(void) {
    for (;;)
        __asm__ volatile("cli; hlt");
}

__attribute__((interrupt)) static void on_exception(struct interrupt_frame *f) {
    (void)f;
    puts_("strata-testguest: unexpected exception\n");
    halt_forever();
}

static void drain_uart(void) {
    while (inb(COM1 + 5) & 1) {
        u8 c = inb(COM1);
        if (rx_head - rx_tail < sizeof(rx)) {
            rx[rx_head % sizeof(rx)] = c;
            rx_head = rx_head + 1;
        }
    }
}

__attribute__((interrupt)) static void on_serial(struct interrupt_frame *f) {
    (void)f;
    drain_uart();
    outb(PIC1, 0x20);
}

__attribute__((interrupt)) static void on_ctl(struct interrupt_frame *f) {
    (void)f;
    if (inb(PORT_EVENTS) & EVENT_SHUTDOWN)
        shutdown_requested = 1;
    outb(PIC1, 0x20);
}

__attribute__((interrupt)) static void on_spurious(struct interrupt_frame *f) { (void)f; }

#define LAPIC 0xfee00000UL

static void lapic_write(u32 reg, u32 v) { *(volatile u32 *)(LAPIC + reg) = v; }
static u32 lapic_read(u32 reg) { return *(volatile u32 *)(LAPIC + reg); }

static void setup_interrupts(void) {
    /* Local APIC on, LINT0 = ExtINT (the 8259 reaches us through it), LINT1 = NMI. */
    lapic_write(0xf0, lapic_read(0xf0) | 0x1ff);
    lapic_write(0x350, 0x700);
    lapic_write(0x360, 0x400);
    for (int i = 0; i < 32; i++)
        set_gate(i, on_exception);
    for (int i = 32; i < 256; i++)
        set_gate(i, on_spurious);
    set_gate(IRQ_BASE + IRQ_SERIAL, on_serial);
    set_gate(IRQ_BASE + IRQ_CTL, on_ctl);
    struct idt_ptr p = {sizeof(idt) - 1, (u64)idt};
    __asm__ volatile("lidt %0" : : "m"(p));
    /* 8259 PICs: vectors 0x20..0x2f, only the serial and control IRQs unmasked. */
    outb(PIC1, 0x11);
    outb(PIC2, 0x11);
    outb(PIC1 + 1, IRQ_BASE);
    outb(PIC2 + 1, IRQ_BASE + 8);
    outb(PIC1 + 1, 0x04);
    outb(PIC2 + 1, 0x02);
    outb(PIC1 + 1, 0x01);
    outb(PIC2 + 1, 0x01);
    outb(PIC1 + 1, (u8)~((1 << IRQ_SERIAL) | (1 << IRQ_CTL)));
    outb(PIC2 + 1, 0xff);
}

static void uart_init(void) {
    outb(COM1 + 1, 0x00); /* no interrupts while we set it up */
    outb(COM1 + 3, 0x80); /* DLAB */
    outb(COM1 + 0, 0x01); /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 2, 0xc7); /* FIFO on, cleared */
    outb(COM1 + 4, 0x0b); /* DTR, RTS, OUT2 (interrupts to the PIC) */
}

/* ---- SMP: find the CPUs in the MP table, start the APs with INIT + STARTUP IPIs ---- */

#define AP_TRAMPOLINE 0x8000UL
#define MAX_CPUS 32

extern char ap_trampoline_start[], ap_trampoline_end[];
static volatile u32 cpus_online = 1;

void ap_main(u32 index) {
    (void)index;
    __atomic_fetch_add(&cpus_online, 1, __ATOMIC_SEQ_CST);
}

static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static int sig_at(const u8 *p, const char *sig) {
    for (int i = 0; i < 4; i++)
        if (p[i] != (u8)sig[i])
            return 0;
    return 1;
}

static u8 sum_bytes(const u8 *p, u32 n) {
    u8 s = 0;
    for (u32 i = 0; i < n; i++)
        s = (u8)(s + p[i]);
    return s;
}

/* Searches the MP spec's areas (EBDA's first KiB, BIOS ROM) for the floating pointer. */
static const u8 *find_mp_config(void) {
    static const u64 areas[][2] = {{0x9fc00, 0xa0000}, {0xf0000, 0x100000}};
    for (int a = 0; a < 2; a++) {
        for (u64 p = areas[a][0]; p + 16 <= areas[a][1]; p += 16) {
            const u8 *f = (const u8 *)p;
            if (sig_at(f, "_MP_") && sum_bytes(f, 16) == 0) {
                u32 cfg = (u32)f[4] | ((u32)f[5] << 8) | ((u32)f[6] << 16) | ((u32)f[7] << 24);
                const u8 *c = (const u8 *)(u64)cfg;
                u32 len = (u32)c[4] | ((u32)c[5] << 8);
                if (cfg && sig_at(c, "PCMP") && sum_bytes(c, len) == 0)
                    return c;
            }
        }
    }
    return 0;
}

static void smp_boot(void) {
    const u8 *c = find_mp_config();
    if (!c) {
        puts_("strata-testguest: cpus 1 online (no MP table)\n");
        return;
    }
    u8 ids[MAX_CPUS];
    u32 n = 0, bsp = 0;
    u32 count = (u32)c[34] | ((u32)c[35] << 8);
    const u8 *e = c + 44;
    for (u32 i = 0; i < count; i++) {
        if (e[0] == 0) {
            if ((e[3] & 1) && n < MAX_CPUS) {
                if (e[3] & 2)
                    bsp = e[1];
                ids[n++] = e[1];
            }
            e += 20;
        } else {
            e += 8;
        }
    }
    if (n == 0) {
        puts_("strata-testguest: cpus 1 online (no processors in the MP table)\n");
        return;
    }
    /* The trampoline goes below 1 MiB, where a STARTUP IPI can point. */
    volatile u8 *dst = (volatile u8 *)AP_TRAMPOLINE;
    for (const char *p = ap_trampoline_start; p < ap_trampoline_end; p++)
        *dst++ = (u8)*p;
    for (u32 i = 0; i < n; i++) {
        if (ids[i] == bsp)
            continue;
        lapic_write(0x310, (u32)ids[i] << 24);
        lapic_write(0x300, 0x4500); /* INIT */
        for (int k = 0; k < 2; k++) {
            lapic_write(0x310, (u32)ids[i] << 24);
            lapic_write(0x300, 0x4600 | (AP_TRAMPOLINE >> 12)); /* STARTUP */
        }
    }
    /* Wait (at most ~2 s at 1 GHz) for every listed CPU to check in. */
    u64 start = rdtsc();
    while (cpus_online < n && rdtsc() - start < 2000000000UL)
        __asm__ volatile("pause");
    puts_("strata-testguest: cpus ");
    putu(cpus_online);
    puts_(" online of ");
    putu(n);
    puts_(" in the MP table\n");
}

/* ---- PVH start info ---- */

struct hvm_start_info {
    u32 magic;
    u32 version;
    u32 flags;
    u32 nr_modules;
    u64 modlist_paddr;
    u64 cmdline_paddr;
    u64 rsdp_paddr;
    u64 memmap_paddr;
    u32 memmap_entries;
    u32 reserved;
};

struct hvm_memmap_entry {
    u64 addr;
    u64 size;
    u32 type;
    u32 reserved;
};

/* Top of the RAM the PVH memory map describes (0 when unknown). */
static u64 ram_top;

static void report_start_info(const struct hvm_start_info *si) {
    if (!si || si->magic != 0x336ec578) {
        puts_("strata-testguest: no PVH start info\n");
        return;
    }
    if (si->version >= 1 && si->memmap_paddr && si->memmap_entries) {
        const struct hvm_memmap_entry *e = (const struct hvm_memmap_entry *)si->memmap_paddr;
        u64 ram = 0;
        for (u32 i = 0; i < si->memmap_entries && i < 128; i++)
            if (e[i].type == 1) {
                ram += e[i].size;
                if (e[i].addr + e[i].size > ram_top)
                    ram_top = e[i].addr + e[i].size;
            }
        puts_("strata-testguest: memory ");
        putu(ram >> 20);
        puts_(" MiB in ");
        putu(si->memmap_entries);
        puts_(" map entries\n");
    }
    if (si->cmdline_paddr) {
        const char *c = (const char *)si->cmdline_paddr;
        puts_("strata-testguest: cmdline \"");
        for (int i = 0; c[i] && i < 256; i++)
            putc_(c[i]);
        puts_("\"\n");
    }
}

/* ---- commands ---- */

static void power_off(void) {
    puts_("strata-testguest: powering off\n");
    outb(PORT_POWEROFF, 0);
    halt_forever();
}

static int streq(const char *a, const char *b) {
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* ---- memory dirtying (for dirty logging, snapshots, migration) ---- */

#define DIRTY_BASE 0x1000000UL /* 16 MiB: above the image, stacks and boot data */
static u64 dirty_pages, dirty_generation, dirty_sum;

static u64 parse_u64(const char *p) {
    u64 v = 0;
    while (*p >= '0' && *p <= '9')
        v = v * 10 + (u64)(*p++ - '0');
    return v;
}

/* Writes one word into each of `n` pages from DIRTY_BASE and keeps their sum. */
static void dirty(u64 n) {
    u64 room = ram_top > DIRTY_BASE ? (ram_top - DIRTY_BASE) >> 12 : 0;
    if (n > room)
        n = room;
    dirty_generation++;
    dirty_sum = 0;
    for (u64 i = 0; i < n; i++) {
        u64 v = (dirty_generation << 32) | i;
        *(volatile u64 *)(DIRTY_BASE + (i << 12)) = v;
        dirty_sum += v;
    }
    dirty_pages = n;
    puts_("strata-testguest: dirtied ");
    putu(n);
    puts_(" pages, checksum ");
    putu(dirty_sum);
    puts_("\n");
}

/* Re-reads the pages of the last dirty run and checks their sum. */
static void check(void) {
    u64 sum = 0;
    for (u64 i = 0; i < dirty_pages; i++)
        sum += *(volatile u64 *)(DIRTY_BASE + (i << 12));
    puts_("strata-testguest: checksum ");
    putu(sum);
    puts_(sum == dirty_sum ? " ok\n" : " BAD\n");
}

/* ---- virtio-blk over virtio-mmio (polled; one request at a time) ---- */

#define VIRTIO_MMIO 0xd0000000UL
#define VQ_SIZE 8

struct vq_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};
struct vq_avail {
    u16 flags;
    u16 idx;
    u16 ring[VQ_SIZE];
    u16 used_event;
};
struct vq_used_elem {
    u32 id;
    u32 len;
};
struct vq_used {
    u16 flags;
    u16 idx;
    struct vq_used_elem ring[VQ_SIZE];
    u16 avail_event;
};
struct blk_req {
    u32 type;
    u32 reserved;
    u64 sector;
};

static struct vq_desc vq_desc[VQ_SIZE] __attribute__((aligned(16)));
static struct vq_avail vq_avail __attribute__((aligned(2)));
static struct vq_used vq_used __attribute__((aligned(4)));
static struct blk_req blk_hdr;
static u8 blk_data[512] __attribute__((aligned(16)));
static volatile u8 blk_status;
static u64 blk_sectors;
static int blk_ready;

static u32 mmio_read(u32 off) { return *(volatile u32 *)(VIRTIO_MMIO + off); }
static void mmio_write(u32 off, u32 v) { *(volatile u32 *)(VIRTIO_MMIO + off) = v; }

static void blk_init(void) {
    if (mmio_read(0x000) != 0x74726976 || mmio_read(0x004) != 2 || mmio_read(0x008) != 2)
        return;
    mmio_write(0x070, 0);
    mmio_write(0x070, 1);     /* ACKNOWLEDGE */
    mmio_write(0x070, 1 | 2); /* DRIVER */
    mmio_write(0x014, 1);
    if (!(mmio_read(0x010) & 1)) /* VIRTIO_F_VERSION_1 */
        return;
    mmio_write(0x024, 0);
    mmio_write(0x020, 0);
    mmio_write(0x024, 1);
    mmio_write(0x020, 1);
    mmio_write(0x070, 1 | 2 | 8); /* FEATURES_OK */
    if (!(mmio_read(0x070) & 8))
        return;
    mmio_write(0x030, 0);
    if (mmio_read(0x034) < VQ_SIZE)
        return;
    mmio_write(0x038, VQ_SIZE);
    mmio_write(0x080, (u32)(u64)vq_desc);
    mmio_write(0x084, 0);
    mmio_write(0x090, (u32)(u64)&vq_avail);
    mmio_write(0x094, 0);
    mmio_write(0x0a0, (u32)(u64)&vq_used);
    mmio_write(0x0a4, 0);
    mmio_write(0x044, 1);
    mmio_write(0x070, 1 | 2 | 8 | 4); /* DRIVER_OK */
    blk_sectors = (u64)mmio_read(0x100) | ((u64)mmio_read(0x104) << 32);
    blk_ready = 1;
    puts_("strata-testguest: virtio-blk ");
    putu(blk_sectors);
    puts_(" sectors\n");
}

/* One request: header, 512-byte data buffer, status. Returns the status (0 = OK). */
static int blk_rw(u32 type, u64 sector) {
    blk_hdr.type = type;
    blk_hdr.reserved = 0;
    blk_hdr.sector = sector;
    blk_status = 0xff;
    vq_desc[0] = (struct vq_desc){(u64)&blk_hdr, sizeof(blk_hdr), 1, 1};
    vq_desc[1] = (struct vq_desc){(u64)blk_data, 512, (u16)(1 | (type == 0 ? 2 : 0)), 2};
    vq_desc[2] = (struct vq_desc){(u64)&blk_status, 1, 2, 0};
    u16 used_before = *(volatile u16 *)&vq_used.idx;
    vq_avail.ring[vq_avail.idx % VQ_SIZE] = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *(volatile u16 *)&vq_avail.idx = (u16)(vq_avail.idx + 1);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    mmio_write(0x050, 0); /* QueueNotify */
    while (*(volatile u16 *)&vq_used.idx == used_before)
        __asm__ volatile("pause");
    mmio_write(0x064, mmio_read(0x060)); /* acknowledge the interrupt */
    return blk_status;
}

static void blk_command(const char *args, int write) {
    if (!blk_ready) {
        puts_("strata-testguest: no virtio-blk disk\n");
        return;
    }
    u64 sector = parse_u64(args);
    while (*args >= '0' && *args <= '9')
        args++;
    if (*args == ' ')
        args++;
    if (write) {
        for (int i = 0; i < 512; i++)
            blk_data[i] = 0;
        for (int i = 0; args[i] && i < 511; i++)
            blk_data[i] = (u8)args[i];
    }
    int st = blk_rw(write ? 1 : 0, sector);
    puts_("strata-testguest: sector ");
    putu(sector);
    if (st != 0) {
        puts_(" error ");
        putu((u64)st);
        puts_("\n");
        return;
    }
    if (write) {
        puts_(" written\n");
        return;
    }
    puts_(": ");
    for (int i = 0; i < 64 && blk_data[i] >= 32 && blk_data[i] < 127; i++)
        putc_((char)blk_data[i]);
    puts_("\n");
}

static int starts_with(const char *s, const char *prefix) {
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

static void run_command(const char *line) {
    if (starts_with(line, "blkr ")) {
        blk_command(line + 5, 0);
    } else if (starts_with(line, "blkw ")) {
        blk_command(line + 5, 1);
    } else if (starts_with(line, "dirty ")) {
        dirty(parse_u64(line + 6));
    } else if (streq(line, "check")) {
        check();
    } else if (streq(line, "poweroff")) {
        power_off();
    } else if (streq(line, "reset")) {
        puts_("strata-testguest: resetting\n");
        outb(0x64, 0xfe);
        halt_forever();
    } else if (streq(line, "crash")) {
        puts_("strata-testguest: crashing on purpose\n");
        struct idt_ptr none = {0, 0};
        __asm__ volatile("lidt %0; int3" : : "m"(none));
        halt_forever();
    }
}

void guest_main(const struct hvm_start_info *si) {
    uart_init();
    puts_("strata-testguest: long mode\n");
    report_start_info(si);
    setup_interrupts();
    smp_boot();
    blk_init();
    drain_uart();
    outb(COM1 + 1, 0x01); /* interrupt on received data */
    __asm__ volatile("sti");
    puts_("STRATA-TESTGUEST-READY\n");

    char line[128];
    u32 len = 0;
    for (;;) {
        __asm__ volatile("cli");
        if (rx_head == rx_tail && !shutdown_requested) {
            /* sti; hlt: the interrupt that wakes us cannot slip in between. */
            __asm__ volatile("sti; hlt" ::: "memory");
            continue;
        }
        __asm__ volatile("sti");
        if (shutdown_requested) {
            puts_("strata-testguest: shutdown requested\n");
            power_off();
        }
        char c = (char)rx[rx_tail % sizeof(rx)];
        rx_tail = rx_tail + 1;
        if (c == '\r' || c == '\n') {
            puts_("\n");
            /* A count kept in guest memory: it goes on across snapshot/restore. */
            lines_seen++;
            puts_("strata-testguest: line ");
            putu(lines_seen);
            puts_("\n");
            line[len] = 0;
            run_command(line);
            len = 0;
        } else {
            putc_(c);
            if (len < sizeof(line) - 1)
                line[len++] = c;
        }
    }
}
