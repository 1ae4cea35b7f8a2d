COMMENT
NaTx.mod -- transient (fast-inactivating) voltage-gated sodium current.

Example mechanism of the luigi_emodel example cell (configs/example).
Hodgkin-Huxley style gating, ina = gNaTxbar * m^3 * h * (v - ena), with
Boltzmann steady states and bell-shaped time constants.

Units: gNaTxbar in S/cm2 (exposed by NEURON as gNaTxbar_NaTx), v and ena in
mV, ina in mA/cm2, time constants in ms.
Temperature: time constants are given at tref = 24 degC and scaled by
q10^((celsius - tref)/10) with q10 = 2.3 (the example model runs at
celsius = 34, i.e. ~2.3x faster kinetics).
ENDCOMMENT

NEURON {
    SUFFIX NaTx
    USEION na READ ena WRITE ina
    RANGE gNaTxbar, gNaTx
    GLOBAL mvhalf, mk, hvhalf, hk, q10, tref
}

UNITS {
    (mV) = (millivolt)
    (mA) = (milliamp)
    (S) = (siemens)
}

PARAMETER {
    gNaTxbar = 0.05 (S/cm2)
    mvhalf = -32 (mV)      : half-activation of m
    mk = 5.5 (mV)          : slope of m
    hvhalf = -42 (mV)      : half-inactivation of h
    hk = 5 (mV)            : slope of h
    q10 = 2.3
    tref = 24 (degC)       : temperature at which the time constants are given
}

ASSIGNED {
    v (mV)
    ena (mV)
    celsius (degC)
    ina (mA/cm2)
    gNaTx (S/cm2)
    minf
    hinf
    mtau (ms)
    htau (ms)
}

STATE {
    m
    h
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    gNaTx = gNaTxbar * m * m * m * h
    ina = gNaTx * (v - ena)
}

INITIAL {
    rates(v)
    m = minf
    h = hinf
}

DERIVATIVE states {
    rates(v)
    m' = (minf - m) / mtau
    h' = (hinf - h) / htau
}

PROCEDURE rates(vm (mV)) {
    LOCAL qt
    qt = q10^((celsius - tref) / 10 (degC))
    minf = 1 / (1 + exp(-(vm - mvhalf) / mk))
    hinf = 1 / (1 + exp((vm - hvhalf) / hk))
    mtau = (0.06 (ms) + 0.25 (ms) * exp(-((vm + 35 (mV)) / 20 (mV))^2)) / qt
    htau = (0.6 (ms) + 14 (ms) * exp(-((vm + 42 (mV)) / 14 (mV))^2)) / qt
}
