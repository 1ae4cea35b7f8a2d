: A sodium and a potassium current in one file (tests several ions and WRITE lists).
NEURON {
    SUFFIX nakx
    USEION na READ ena WRITE ina
    USEION k READ ek WRITE ik
    RANGE gnabar, gkbar
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER { gnabar = 0.1 (S/cm2) gkbar = 0.03 (S/cm2) }
ASSIGNED { v (mV) ena (mV) ek (mV) ina (mA/cm2) ik (mA/cm2) }
BREAKPOINT {
    ina = gnabar * (v - ena) * 0
    ik = gkbar * (v - ek) * 0
}
