#include "textflag.h"

// func addF32AVX2(d, a, b *float32, n int)
// d[i] = a[i] + b[i] for i < n; d may alias a or b exactly.
TEXT ·addF32AVX2(SB), NOSPLIT, $0-32
	MOVQ d+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	XORQ AX, AX
	MOVQ CX, BX
	SHRQ $5, BX
	JZ   f32tail

f32loop:
	VMOVUPS (SI)(AX*1), Y0
	VMOVUPS 32(SI)(AX*1), Y1
	VMOVUPS 64(SI)(AX*1), Y2
	VMOVUPS 96(SI)(AX*1), Y3
	VADDPS  (DX)(AX*1), Y0, Y0
	VADDPS  32(DX)(AX*1), Y1, Y1
	VADDPS  64(DX)(AX*1), Y2, Y2
	VADDPS  96(DX)(AX*1), Y3, Y3
	VMOVUPS Y0, (DI)(AX*1)
	VMOVUPS Y1, 32(DI)(AX*1)
	VMOVUPS Y2, 64(DI)(AX*1)
	VMOVUPS Y3, 96(DI)(AX*1)
	ADDQ    $128, AX
	DECQ    BX
	JNZ     f32loop
	VZEROUPPER

f32tail:
	ANDQ $31, CX
	JZ   f32done

f32one:
	MOVSS (SI)(AX*1), X0
	ADDSS (DX)(AX*1), X0
	MOVSS X0, (DI)(AX*1)
	ADDQ  $4, AX
	DECQ  CX
	JNZ   f32one

f32done:
	RET

// func addF64AVX2(d, a, b *float64, n int)
TEXT ·addF64AVX2(SB), NOSPLIT, $0-32
	MOVQ d+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	XORQ AX, AX
	MOVQ CX, BX
	SHRQ $4, BX
	JZ   f64tail

f64loop:
	VMOVUPD (SI)(AX*1), Y0
	VMOVUPD 32(SI)(AX*1), Y1
	VMOVUPD 64(SI)(AX*1), Y2
	VMOVUPD 96(SI)(AX*1), Y3
	VADDPD  (DX)(AX*1), Y0, Y0
	VADDPD  32(DX)(AX*1), Y1, Y1
	VADDPD  64(DX)(AX*1), Y2, Y2
	VADDPD  96(DX)(AX*1), Y3, Y3
	VMOVUPD Y0, (DI)(AX*1)
	VMOVUPD Y1, 32(DI)(AX*1)
	VMOVUPD Y2, 64(DI)(AX*1)
	VMOVUPD Y3, 96(DI)(AX*1)
	ADDQ    $128, AX
	DECQ    BX
	JNZ     f64loop
	VZEROUPPER

f64tail:
	ANDQ $15, CX
	JZ   f64done

f64one:
	MOVSD (SI)(AX*1), X0
	ADDSD (DX)(AX*1), X0
	MOVSD X0, (DI)(AX*1)
	ADDQ  $8, AX
	DECQ  CX
	JNZ   f64one

f64done:
	RET
