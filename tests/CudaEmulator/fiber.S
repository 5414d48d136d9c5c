# fiber.S — the emulator's context switch (x86-64 System V): saves the callee-saved registers on the current stack,
# stores the stack pointer in *rdi, switches to the stack rsi and restores that fiber's registers.
    .text
    .globl emu_fiber_switch
    .type emu_fiber_switch, @function
emu_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_fiber_switch, .-emu_fiber_switch

# A new fiber's stack holds six zero registers and this address: the first switch "returns" here.
    .globl emu_fiber_start
    .type emu_fiber_start, @function
emu_fiber_start:
    andq $-16, %rsp
    call emu_fiber_main@PLT
    ud2
    .size emu_fiber_start, .-emu_fiber_start
    .section .note.GNU-stack,"",@progbits
