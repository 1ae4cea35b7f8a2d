COMMENT
Ihx.mod -- hyperpolarisation-activated cation current (HCN channels, Ih).
Produces the voltage "sag" and rebound on hyperpolarising steps.

Example mechanism of the luigi_emodel example cell (configs/example).
ihcn = gIhxbar * m * (v - ehcn) as a NONSPECIFIC_CURRENT (mixed Na/K
permeability), reversal ehcn = -45 mV; Boltzmann steady state activating
with hyperpolarisation and a bell-shaped time constant.

Units: gIhxbar in S/cm2 (exposed by NEURON as gIhxbar_Ihx), v and ehcn in
mV, ihcn in mA/cm2, time constant in ms.
Temperature: the time constant is given at tref = 24 degC and scaled by
q10^((celsius - tref)/10) with q10 = 3 (the example model runs at
celsius = 34, peak tau ~ 60 ms).
ENDCOMMENT

NEURON {
    SUFFIX Ihx
    NONSPECIFIC_CURRENT ihcn
    RANGE gIhxbar, gIhx, ehcn
    GLOBAL mvhalf, mk, q10, tref
}

UNITS {
    (mV) = (millivolt)
    (mA) = (milliamp)
    (S) = (siemens)
}

PARAMETER {
    gIhxbar = 0.0001 (S/cm2)
    ehcn = -45 (mV)        : reversal potential of the HCN current
    mvhalf = -88 (mV)      : half-activation (activates on hyperpolarisation)
    mk = 8 (mV)            : slope
    q10 = 3
    tref = 24 (degC)
}

ASSIGNED {
    v (mV)
    celsius (degC)
    ihcn (mA/cm2)
    gIhx (S/cm2)
    minf
    mtau (ms)
}

STATE {
    m
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    gIhx = gIhxbar * m
    ihcn = gIhx * (v - ehcn)
}

INITIAL {
    rates(v)
    m = minf
}

DERIVATIVE states {
    rates(v)
    m' = (minf - m) / mtau
}

PROCEDURE rates(vm (mV)) {
    LOCAL qt
    qt = q10^((celsius - tref) / 10 (degC))
    minf = 1 / (1 + exp((vm - mvhalf) / mk))
    mtau = (20 (ms) + 320 (ms) / (exp((vm + 80 (mV)) / 18 (mV)) + exp(-(vm + 80 (mV)) / 18 (mV)))) / qt
}
