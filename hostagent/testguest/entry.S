/*
 * Strata test guest: PVH entry (32-bit protected mode, paging off, %ebx = hvm_start_info)
 * that switches to long mode with an identity map of the low 4 GiB (2 MiB pages) and
 * calls guest_main(start_info). Plain integer instructions only (see ARCHITECTURE.md).
 */

/* Xen PVH ELF note: XEN_ELFNOTE_PHYS32_ENTRY (18) gives the 32-bit entry point. */
    .section .note.Xen, "a", @note
    .align 4
    .long 4          /* namesz */
    .long 4          /* descsz */
    .long 18         /* type: XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .align 4
    .long _start32

    .section .text.entry, "ax"
    .code32
    .globl _start32
_start32:
    cli
    cld
    movl %ebx, %esi                     /* keep the start_info pointer */

    /*
     * Keep 32-bit code short: under KVM PVM, code outside 64-bit paged mode goes through
     * KVM's instruction emulator (~1 M instructions/s). The page tables are built by the
     * assembler (.data), .bss is zeroed once in long mode.
     */
    lgdt gdt_ptr

    movl $pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax                     /* PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx              /* EFER */
    rdmsr
    orl $0x100, %eax                    /* LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax               /* PG | PE */
    movl %eax, %cr0
    ljmp $0x08, $start64

    .code64
start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    /*
     * Zero .bss (small: the stacks live in .noinit). Under KVM PVM each first touch of a
     * guest page is costly (~0.15 ms), so the guest does not write memory it need not.
     */
    movq $__bss_start, %rdi
    movq $__bss_end, %rcx
    subq %rdi, %rcx
    shrq $3, %rcx
    xorl %eax, %eax
    rep stosq
    movq $stack_top, %rsp
    movl %esi, %edi                     /* guest_main(start_info) */
    call guest_main
2:  cli
    hlt
    jmp 2b

/*
 * Application processors. The BSP copies this trampoline to AP_TRAMPOLINE (below 1 MiB)
 * and sends INIT + STARTUP IPIs with vector AP_TRAMPOLINE >> 12: the AP starts in real
 * mode at CS = 0x0800, IP = 0, and goes 16 -> 32 -> 64 bit on the BSP's page tables.
 */
    .set AP_TRAMPOLINE, 0x8000
    .section .text.trampoline, "ax"
    .code16
    .globl ap_trampoline_start, ap_trampoline_end
ap_trampoline_start:
    cli
    cld
    lgdtl %cs:(ap_gdt_ptr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(AP_TRAMPOLINE + (ap32 - ap_trampoline_start))
    .code32
ap32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    ljmp $0x08, $ap64
    .align 8
ap_gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt
ap_trampoline_end:

    .text
    .code64
ap64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $1, %eax
    lock xaddl %eax, ap_next            /* this AP's index: 0, 1, ... */
    cmpl $MAX_APS, %eax
    jae 2f
    movl %eax, %edi
    incl %eax
    shll $12, %eax
    movq $ap_stacks, %rsp
    addq %rax, %rsp                     /* top of stack number index */
    call ap_main
2:  cli
    hlt
    jmp 2b

    .section .rodata
    .align 16
gdt:
    .quad 0
    .quad 0x00af9a000000ffff            /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff            /* 0x10: data */
    .quad 0x00cf9a000000ffff            /* 0x18: 32-bit code (AP start-up) */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

    /* Identity map of the low 4 GiB with 2 MiB pages: PML4 -> PDPT -> 4 PDs. */
    .section .data
    .align 4096
pml4:
    .quad pdpt + 3
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x0003
    .quad pd + 0x1003
    .quad pd + 0x2003
    .quad pd + 0x3003
    .fill 508, 8, 0
pd:
    .set page, 0
    .rept 2048
    .quad (page << 21) | 0x83
    .set page, page + 1
    .endr

    .section .noinit, "aw", @nobits
    .align 4096
stack:  .space 16384
stack_top:
    .set MAX_APS, 31
    .globl ap_stacks
ap_stacks: .space 4096 * MAX_APS

    .section .bss
    .align 4
ap_next: .long 0
    .section .note.GNU-stack, "", @progbits
