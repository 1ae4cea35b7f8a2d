COMMENT
Kdrx.mod -- delayed-rectifier potassium current (fast, non-inactivating).

Example mechanism of the luigi_emodel example cell (configs/example).
Hodgkin-Huxley style gating, ik = gKdrxbar * n^4 * (v - ek), with a
Boltzmann steady state and a bell-shaped time constant.

Units: gKdrxbar in S/cm2 (exposed by NEURON as gKdrxbar_Kdrx), v and ek in
mV, ik in mA/cm2, time constant in ms.
Temperature: the time constant is given at tref = 24 degC and scaled by
q10^((celsius - tref)/10) with q10 = 2.3 (the example model runs at
celsius = 34).
ENDCOMMENT

NEURON {
    SUFFIX Kdrx
    USEION k READ ek WRITE ik
    RANGE gKdrxbar, gKdrx
    GLOBAL nvhalf, nk, q10, tref
}

UNITS {
    (mV) = (millivolt)
    (mA) = (milliamp)
    (S) = (siemens)
}

PARAMETER {
    gKdrxbar = 0.02 (S/cm2)
    nvhalf = -32 (mV)      : half-activation of n
    nk = 8 (mV)            : slope of n
    q10 = 2.3
    tref = 24 (degC)       : temperature at which the time constant is given
}

ASSIGNED {
    v (mV)
    ek (mV)
    celsius (degC)
    ik (mA/cm2)
    gKdrx (S/cm2)
    ninf
    ntau (ms)
}

STATE {
    n
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    gKdrx = gKdrxbar * n * n * n * n
    ik = gKdrx * (v - ek)
}

INITIAL {
    rates(v)
    n = ninf
}

DERIVATIVE states {
    rates(v)
    n' = (ninf - n) / ntau
}

PROCEDURE rates(vm (mV)) {
    LOCAL qt
    qt = q10^((celsius - tref) / 10 (degC))
    ninf = 1 / (1 + exp(-(vm - nvhalf) / nk))
    ntau = (2.0 (ms) + 4.0 (ms) * exp(-((vm + 40 (mV)) / 30 (mV))^2)) / qt
}
