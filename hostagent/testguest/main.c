/*
 * Strata test guest: a tiny freestanding x86-64 program that the native engine (strata-vmx)
 * and QEMU both boot as a PVH ELF. Plain integer instructions only: KVM PVM emulates
 * guest instructions and lacks SSE/AVX, xsave, cmpxchg16b, x87 and more.
 *
 * Serial (COM1, 16550): prints a ready marker, then echoes what it receives, line by line.
 * Commands (a whole input line): "poweroff", "reset" (i8042 reset line), "crash" (an
 * instruction KVM cannot run, or a triple fault on hardware virtualisation), "dirty N"
 * (write N pages from 16 MiB and print their checksum), "check" (re-read them and compare),
 * "fbfill N" (repaint the framebuffer N times, see below).
 * "blkr S" / "blkw S TEXT" read / write sector S of the virtio-blk disk (virtio-mmio at
 * 0xd0000000), polled. "blkslot N" switches to (and sets up) the virtio-blk device in slot N
 * (0xd0000000 + N * 0x1000; slot 4 is the native engine's hot-add slot); "blkcap" re-reads
 * the capacity and says whether the device raised a configuration change (hot-add).
 * virtio-net (virtio-mmio at 0xd0001000, IRQ 7, interrupt-driven): at boot the guest
 * broadcasts one frame of ethertype 0x88b5 (IEEE local experimental) carrying
 * "STRATA-HELLO"; every 0x88b5 frame it receives is echoed back to its sender with
 * "STRATA-PING" turned into "STRATA-PONG"; other ethertypes are counted and reported, not
 * echoed (a host stack's own traffic must not bounce back at it). "net" prints counters.
 * Framebuffer (registers at 0xd0100000 say where and how big): at boot the guest draws eight
 * colour bars (white, yellow, cyan, green, magenta, red, blue, black) over the top two thirds
 * and "STRATA" in white on black, in a 5x7 font scaled up, in the bottom third, and prints
 * the geometry it used. "fbfill N" repaints the whole framebuffer N times, alternating two
 * solid colours (dark blue-grey, then orange), and prints "strata-testguest: fbfill done"
 * (for frame-rate measurements of the VNC console).
 * PS/2 keyboard (i8042, IRQ 1, set-1 scan codes with the controller's translation on): typed
 * keys are echoed to the serial port; Enter prints the line as 'typed "…"'.
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
#define IRQ_NET 7
#define IRQ_KBD 1

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
static void puthex(u64 v, int digits) {
    for (int i = digits - 1; i >= 0; i--)
        putc_("0123456789abcdef"[(v >> (4 * i)) & 0xf]);
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
static volatile int net_irq;
static volatile u8 kb_ring[64];
static volatile u32 kb_head, kb_tail;
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

#define NET_MMIO 0xd0001000UL

__attribute__((interrupt)) static void on_net(struct interrupt_frame *f) {
    (void)f;
    volatile u32 *isr = (volatile u32 *)(NET_MMIO + 0x060);
    u32 st = *isr;
    *(volatile u32 *)(NET_MMIO + 0x064) = st; /* InterruptACK */
    net_irq = 1;
    outb(PIC1, 0x20);
}

__attribute__((interrupt)) static void on_kbd(struct interrupt_frame *f) {
    (void)f;
    while (inb(0x64) & 1) {
        u8 c = inb(0x60);
        if (kb_head - kb_tail < sizeof(kb_ring)) {
            kb_ring[kb_head % sizeof(kb_ring)] = c;
            kb_head = kb_head + 1;
        }
    }
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
    set_gate(IRQ_BASE + IRQ_NET, on_net);
    set_gate(IRQ_BASE + IRQ_KBD, on_kbd);
    struct idt_ptr p = {sizeof(idt) - 1, (u64)idt};
    __asm__ volatile("lidt %0" : : "m"(p));
    /* 8259 PICs: vectors 0x20..0x2f, only the keyboard, serial, control and NIC IRQs
     * unmasked. */
    outb(PIC1, 0x11);
    outb(PIC2, 0x11);
    outb(PIC1 + 1, IRQ_BASE);
    outb(PIC2 + 1, IRQ_BASE + 8);
    outb(PIC1 + 1, 0x04);
    outb(PIC2 + 1, 0x02);
    outb(PIC1 + 1, 0x01);
    outb(PIC2 + 1, 0x01);
    outb(PIC1 + 1, (u8)~((1 << IRQ_SERIAL) | (1 << IRQ_CTL) | (1 << IRQ_NET) | (1 << IRQ_KBD)));
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
static unsigned long blk_base = VIRTIO_MMIO;
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

static u32 mmio_read(u32 off) { return *(volatile u32 *)(blk_base + off); }
static void mmio_write(u32 off, u32 v) { *(volatile u32 *)(blk_base + off) = v; }

static void blk_init(void) {
    blk_ready = 0;
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

static void blk_slot(const char *args) {
    u64 slot = parse_u64(args);
    blk_base = VIRTIO_MMIO + slot * 0x1000;
    for (int i = 0; i < VQ_SIZE; i++)
        vq_avail.ring[i] = 0;
    vq_avail.idx = 0;
    vq_used.idx = 0;
    puts_("strata-testguest: slot ");
    putu(slot);
    puts_("\n");
    blk_init();
    if (!blk_ready)
        puts_("strata-testguest: no virtio-blk device in that slot\n");
}

static void blk_capacity(void) {
    if (!blk_ready) {
        puts_("strata-testguest: no virtio-blk disk\n");
        return;
    }
    u32 isr = mmio_read(0x060);
    mmio_write(0x064, isr & 2);
    blk_sectors = (u64)mmio_read(0x100) | ((u64)mmio_read(0x104) << 32);
    puts_("strata-testguest: virtio-blk capacity ");
    putu(blk_sectors);
    puts_(isr & 2 ? " sectors, configuration changed\n" : " sectors, no configuration change\n");
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


/* ---- virtio-net over virtio-mmio (interrupt-driven receive, one frame sent at a time) ---- */

#define NET_HDR 12
#define NET_BUF 1536
#define ETHERTYPE_STRATA 0x88b5

static struct vq_desc rxq_desc[VQ_SIZE] __attribute__((aligned(16)));
static struct vq_avail rxq_avail __attribute__((aligned(2)));
static struct vq_used rxq_used __attribute__((aligned(4)));
static struct vq_desc txq_desc[VQ_SIZE] __attribute__((aligned(16)));
static struct vq_avail txq_avail __attribute__((aligned(2)));
static struct vq_used txq_used __attribute__((aligned(4)));
static u8 rx_bufs[VQ_SIZE][NET_BUF] __attribute__((aligned(16)));
static u8 tx_buf[NET_BUF] __attribute__((aligned(16)));
static u8 net_mac[6];
static int net_ready;
static u16 rx_used_seen;
static u64 net_frames_in, net_echoed, net_ignored;

static u32 net_read(u32 off) { return *(volatile u32 *)(NET_MMIO + off); }
static void net_write(u32 off, u32 v) { *(volatile u32 *)(NET_MMIO + off) = v; }

static int net_queue(u32 idx, struct vq_desc *d, struct vq_avail *a, struct vq_used *u) {
    net_write(0x030, idx);
    if (net_read(0x034) < VQ_SIZE)
        return 0;
    net_write(0x038, VQ_SIZE);
    net_write(0x080, (u32)(u64)d);
    net_write(0x084, 0);
    net_write(0x090, (u32)(u64)a);
    net_write(0x094, 0);
    net_write(0x0a0, (u32)(u64)u);
    net_write(0x0a4, 0);
    net_write(0x044, 1);
    return 1;
}

static void put_mac(const u8 *m) {
    for (int i = 0; i < 6; i++) {
        if (i)
            putc_(':');
        puthex(m[i], 2);
    }
}

/* Sends one frame (no virtio header: added here) and waits for the device to take it. */
static void net_send(const u8 *frame, u32 len) {
    if (len > NET_BUF - NET_HDR)
        len = NET_BUF - NET_HDR;
    for (int i = 0; i < NET_HDR; i++)
        tx_buf[i] = 0;
    for (u32 i = 0; i < len; i++)
        tx_buf[NET_HDR + i] = frame[i];
    txq_desc[0] = (struct vq_desc){(u64)tx_buf, NET_HDR + len, 0, 0};
    u16 used_before = *(volatile u16 *)&txq_used.idx;
    txq_avail.ring[txq_avail.idx % VQ_SIZE] = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *(volatile u16 *)&txq_avail.idx = (u16)(txq_avail.idx + 1);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    net_write(0x050, 1);
    for (u32 spin = 0; *(volatile u16 *)&txq_used.idx == used_before && spin < 10000000; spin++)
        __asm__ volatile("pause");
}

static void net_init(void) {
    if (net_read(0x000) != 0x74726976 || net_read(0x004) != 2 || net_read(0x008) != 1)
        return;
    net_write(0x070, 0);
    net_write(0x070, 1);
    net_write(0x070, 1 | 2);
    net_write(0x014, 1);
    if (!(net_read(0x010) & 1)) /* VIRTIO_F_VERSION_1 */
        return;
    net_write(0x014, 0);
    u32 lo = net_read(0x010) & (1u << 5); /* VIRTIO_NET_F_MAC, nothing else */
    net_write(0x024, 0);
    net_write(0x020, lo);
    net_write(0x024, 1);
    net_write(0x020, 1);
    net_write(0x070, 1 | 2 | 8);
    if (!(net_read(0x070) & 8))
        return;
    if (!net_queue(0, rxq_desc, &rxq_avail, &rxq_used) ||
        !net_queue(1, txq_desc, &txq_avail, &txq_used))
        return;
    for (u32 i = 0; i < VQ_SIZE; i++) {
        rxq_desc[i] = (struct vq_desc){(u64)rx_bufs[i], NET_BUF, 2, 0};
        rxq_avail.ring[i] = (u16)i;
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *(volatile u16 *)&rxq_avail.idx = VQ_SIZE;
    for (int i = 0; i < 6; i++)
        net_mac[i] = lo ? *(volatile u8 *)(NET_MMIO + 0x100 + i) : (u8)(i == 0 ? 2 : i);
    net_write(0x070, 1 | 2 | 8 | 4); /* DRIVER_OK */
    net_write(0x050, 0);
    net_ready = 1;
    puts_("strata-testguest: virtio-net mac ");
    put_mac(net_mac);
    puts_("\n");
}

/* Broadcasts the boot frame. */
static void net_hello(void) {
    static const char msg[] = "STRATA-HELLO from strata-testguest";
    u8 f[64];
    for (int i = 0; i < 64; i++)
        f[i] = 0;
    for (int i = 0; i < 6; i++) {
        f[i] = 0xff;
        f[6 + i] = net_mac[i];
    }
    f[12] = ETHERTYPE_STRATA >> 8;
    f[13] = ETHERTYPE_STRATA & 0xff;
    for (u32 i = 0; i < sizeof(msg) - 1; i++)
        f[14 + i] = (u8)msg[i];
    net_send(f, 64);
    puts_("strata-testguest: net hello sent\n");
}

static int bytes_eq(const u8 *a, const char *b, u32 n) {
    for (u32 i = 0; i < n; i++)
        if (a[i] != (u8)b[i])
            return 0;
    return 1;
}

/* Handles one received frame (without its virtio header). */
static void net_frame(u8 *f, u32 len) {
    net_frames_in++;
    if (len < 14)
        return;
    u16 type = (u16)((f[12] << 8) | f[13]);
    if (type != ETHERTYPE_STRATA) {
        net_ignored++;
        puts_("strata-testguest: net ignored a frame of type 0x");
        puthex(type, 4);
        puts_("\n");
        return;
    }
    /* Back to the sender, from us; "STRATA-PING" becomes "STRATA-PONG". */
    for (int i = 0; i < 6; i++) {
        f[i] = f[6 + i];
        f[6 + i] = net_mac[i];
    }
    if (len >= 14 + 11 && bytes_eq(f + 14, "STRATA-PING", 11))
        f[14 + 8] = 'O';
    net_send(f, len);
    net_echoed++;
    puts_("strata-testguest: net echoed ");
    putu(len);
    puts_(" bytes\n");
}

/* Takes the frames the device has put in the receive ring, then gives the buffers back. */
static void net_poll(void) {
    if (!net_ready)
        return;
    int reposted = 0;
    while (rx_used_seen != *(volatile u16 *)&rxq_used.idx) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        struct vq_used_elem e = rxq_used.ring[rx_used_seen % VQ_SIZE];
        if (e.id < VQ_SIZE && e.len > NET_HDR && e.len <= NET_BUF)
            net_frame(rx_bufs[e.id] + NET_HDR, e.len - NET_HDR);
        rxq_avail.ring[rxq_avail.idx % VQ_SIZE] = (u16)(e.id % VQ_SIZE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        *(volatile u16 *)&rxq_avail.idx = (u16)(rxq_avail.idx + 1);
        rx_used_seen++;
        reposted = 1;
    }
    if (reposted)
        net_write(0x050, 0);
}

static void net_report(void) {
    puts_("strata-testguest: net frames in ");
    putu(net_frames_in);
    puts_(", echoed ");
    putu(net_echoed);
    puts_(", ignored ");
    putu(net_ignored);
    puts_("\n");
}

/* ---- PS/2 keyboard: set-1 scan codes to US ASCII ---- */

/* Indexed by make code 0x00..0x39. */
static const char kb_plain[] = "\0\033" "1234567890-=\b\t" "qwertyuiop[]\n\0" "asdfghjkl;'`\0\\"
                               "zxcvbnm,./\0*\0 ";
static const char kb_shifted[] = "\0\033" "!@#$%^&*()_+\b\t" "QWERTYUIOP{}\n\0" "ASDFGHJKL:\"~\0|"
                                 "ZXCVBNM<>?\0*\0 ";
static int kb_shift, kb_extended;
static char kb_line[128];
static u32 kb_len;

static void kbd_init(void) {
    for (int i = 0; i < 64 && (inb(0x64) & 1); i++)
        (void)inb(0x60);
    outb(0x64, 0x60); /* write the command byte: */
    outb(0x60, 0x45); /* keyboard interrupt, system flag, translation to set 1 */
}

static void kbd_poll(void) {
    while (kb_tail != kb_head) {
        u8 c = kb_ring[kb_tail % sizeof(kb_ring)];
        kb_tail = kb_tail + 1;
        if (c == 0xe0) {
            kb_extended = 1;
            continue;
        }
        if (kb_extended) { /* arrows, right ctrl/alt...: not typed */
            kb_extended = 0;
            continue;
        }
        if (c == 0x2a || c == 0x36) {
            kb_shift = 1;
        } else if (c == 0xaa || c == 0xb6) {
            kb_shift = 0;
        } else if (c < sizeof(kb_plain) - 1) {
            char a = kb_shift ? kb_shifted[c] : kb_plain[c];
            if (a == '\n') {
                kb_line[kb_len] = 0;
                puts_("\nstrata-testguest: typed \"");
                puts_(kb_line);
                puts_("\"\n");
                kb_len = 0;
            } else if (a == '\b') {
                if (kb_len)
                    kb_len--;
            } else if (a >= ' ' && a < 127) {
                putc_(a);
                if (kb_len < sizeof(kb_line) - 1)
                    kb_line[kb_len++] = a;
            }
        }
    }
}

/* ---- linear framebuffer ---- */

#define DISPLAY_REGS 0xd0100000UL

static const u8 font_s[7] = {0x0e, 0x11, 0x10, 0x0e, 0x01, 0x11, 0x0e};
static const u8 font_t[7] = {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04};
static const u8 font_r[7] = {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11};
static const u8 font_a[7] = {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11};

static void fill(u32 *p, u64 n, u32 color) {
    __asm__ volatile("rep stosl" : "+D"(p), "+c"(n) : "a"(color) : "memory");
}

/* Where fb_draw found the framebuffer (fb_base 0: none). */
static u64 fb_base;
static u32 fb_w, fb_h, fb_stride;

static void fbfill(u64 n) {
    static const u32 colours[2] = {0x203040, 0xc08020};
    if (!fb_base) {
        puts_("strata-testguest: no framebuffer\n");
        return;
    }
    for (u64 i = 0; i < n; i++)
        for (u32 y = 0; y < fb_h; y++)
            fill((u32 *)(fb_base + (u64)y * fb_stride), fb_w, colours[i & 1]);
    puts_("strata-testguest: fbfill done\n");
}

static void fb_draw(void) {
    volatile u32 *r = (volatile u32 *)DISPLAY_REGS;
    if (r[0] != 0x31424653 || r[6] != 1)
        return;
    u64 base = (u64)r[1] | ((u64)r[2] << 32);
    u32 w = r[3], h = r[4], stride = r[5];
    if (!w || !h || stride < w * 4 || base + (u64)stride * h > 0x100000000UL)
        return;
    fb_base = base;
    fb_w = w;
    fb_h = h;
    fb_stride = stride;
    static const u32 bars[8] = {0xffffff, 0xffff00, 0x00ffff, 0x00ff00,
                                0xff00ff, 0xff0000, 0x0000ff, 0x000000};
    u32 bar_end = h * 2 / 3;
    for (u32 y = 0; y < bar_end; y++) {
        u32 *row = (u32 *)(base + (u64)y * stride);
        for (u32 i = 0; i < 8; i++) {
            u32 x0 = i * w / 8, x1 = (i + 1) * w / 8;
            fill(row + x0, x1 - x0, bars[i]);
        }
    }
    for (u32 y = bar_end; y < h; y++)
        fill((u32 *)(base + (u64)y * stride), w, 0);
    /* "STRATA": 6 glyphs of 5x7 with one column between, scaled by s. */
    u32 s = (h - bar_end) / 10;
    if (s * 36 > w)
        s = w / 36;
    if (s == 0)
        s = 1;
    u32 tx = (w - 35 * s) / 2, ty = bar_end + ((h - bar_end) - 7 * s) / 2;
    const u8 *glyphs[6] = {font_s, font_t, font_r, font_a, font_t, font_a};
    for (u32 g = 0; g < 6; g++)
        for (u32 gy = 0; gy < 7; gy++)
            for (u32 gx = 0; gx < 5; gx++)
                if (glyphs[g][gy] & (0x10 >> gx))
                    for (u32 k = 0; k < s; k++)
                        fill((u32 *)(base + (u64)(ty + gy * s + k) * stride) + tx + (g * 6 + gx) * s,
                             s, 0xffffff);
    puts_("strata-testguest: framebuffer ");
    putu(w);
    putc_('x');
    putu(h);
    puts_(" drawn, text at ");
    putu(tx);
    putc_(',');
    putu(ty);
    puts_(" scale ");
    putu(s);
    puts_("\n");
}

static int starts_with(const char *s, const char *prefix) {
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

static void run_command(const char *line) {
    if (starts_with(line, "blkslot ")) {
        blk_slot(line + 8);
    } else if (streq(line, "blkcap")) {
        blk_capacity();
    } else if (starts_with(line, "blkr ")) {
        blk_command(line + 5, 0);
    } else if (starts_with(line, "blkw ")) {
        blk_command(line + 5, 1);
    } else if (starts_with(line, "fbfill ")) {
        fbfill(parse_u64(line + 7));
    } else if (starts_with(line, "dirty ")) {
        dirty(parse_u64(line + 6));
    } else if (streq(line, "net")) {
        net_report();
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
    net_init();
    kbd_init();
    drain_uart();
    outb(COM1 + 1, 0x01); /* interrupt on received data */
    __asm__ volatile("sti");
    puts_("STRATA-TESTGUEST-READY\n");
    if (net_ready)
        net_hello();
    fb_draw();

    char line[128];
    u32 len = 0;
    for (;;) {
        __asm__ volatile("cli");
        if (rx_head == rx_tail && !shutdown_requested && !net_irq && kb_head == kb_tail) {
            /* sti; hlt: the interrupt that wakes us cannot slip in between. */
            __asm__ volatile("sti; hlt" ::: "memory");
            continue;
        }
        __asm__ volatile("sti");
        if (net_irq) {
            net_irq = 0;
            net_poll();
            continue;
        }
        if (kb_head != kb_tail) {
            kbd_poll();
            continue;
        }
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
